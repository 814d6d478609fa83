#include "json.h"

#include <string.h>

static size_t skip_ws(const char *s, size_t len, size_t i) {
  while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  return i;
}

static size_t skip_string(const char *s, size_t len, size_t i) {
  // s[i] == '"'
  for (i++; i < len; i++) {
    if (s[i] == '\\') {
      i++;
    } else if (s[i] == '"') {
      return i + 1;
    }
  }
  return JSON_NONE;
}

// The end of the value starting at i, or JSON_NONE if the text is malformed.
static size_t skip_value(const char *s, size_t len, size_t i) {
  if (i >= len) return JSON_NONE;
  if (s[i] == '"') return skip_string(s, len, i);
  if (s[i] == '{' || s[i] == '[') {
    size_t depth = 0;
    while (i < len) {
      char c = s[i];
      if (c == '"') {
        i = skip_string(s, len, i);
        if (i == JSON_NONE) return JSON_NONE;
        continue;
      }
      if (c == '{' || c == '[') depth++;
      if (c == '}' || c == ']') {
        depth--;
        if (depth == 0) return i + 1;
      }
      i++;
    }
    return JSON_NONE;
  }
  // number, true, false, null
  while (i < len && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\n' &&
         s[i] != '\t' && s[i] != '\r')
    i++;
  return i;
}

json_span json_root(const char *text, size_t len) {
  size_t start = skip_ws(text, len, 0);
  size_t end = skip_value(text, len, start);
  if (end == JSON_NONE) return (json_span){JSON_NONE, JSON_NONE};
  return (json_span){start, end};
}

json_span json_member(const char *s, size_t len, json_span object, const char *key) {
  json_span none = {JSON_NONE, JSON_NONE};
  if (object.start == JSON_NONE || s[object.start] != '{') return none;
  size_t key_len = strlen(key);
  size_t i = skip_ws(s, object.end, object.start + 1);
  while (i < object.end && s[i] == '"') {
    size_t key_end = skip_string(s, len, i);
    if (key_end == JSON_NONE) return none;
    // Keys we look for contain no escapes, so a byte comparison suffices.
    bool match = key_end - i - 2 == key_len && memcmp(s + i + 1, key, key_len) == 0;
    i = skip_ws(s, object.end, key_end);
    if (i >= object.end || s[i] != ':') return none;
    size_t value = skip_ws(s, object.end, i + 1);
    size_t value_end = skip_value(s, object.end, value);
    if (value_end == JSON_NONE) return none;
    if (match) return (json_span){value, value_end};
    i = skip_ws(s, object.end, value_end);
    if (i < object.end && s[i] == ',') i = skip_ws(s, object.end, i + 1);
  }
  return none;
}

bool json_is_empty_object(const char *text, json_span object) {
  return skip_ws(text, object.end, object.start + 1) == object.end - 1;
}

bool json_integer(const char *s, json_span value, long *out) {
  size_t i = value.start;
  bool negative = i < value.end && s[i] == '-';
  if (negative) i++;
  if (i >= value.end) return false;
  long n = 0;
  for (; i < value.end; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    if (n > (__LONG_MAX__ - 9) / 10) return false;
    n = n * 10 + (s[i] - '0');
  }
  *out = negative ? -n : n;
  return true;
}
