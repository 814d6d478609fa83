// A minimal JSON scanner: finds members of objects in well-formed JSON text without building a
// tree. Enough for a plugin that reads or edits a few fields of a Kubernetes object.
#ifndef KUBETASK_JSON_H
#define KUBETASK_JSON_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_NONE ((size_t)-1)

// A value in the text: [start, end). start == JSON_NONE when there is none.
typedef struct {
  size_t start;
  size_t end;
} json_span;

// The top-level value.
json_span json_root(const char *text, size_t len);
// The value of member `key` of the object `object`, or a span with start == JSON_NONE.
json_span json_member(const char *text, size_t len, json_span object, const char *key);
// Whether `object` is `{}` (whitespace allowed).
bool json_is_empty_object(const char *text, json_span object);
// Parses an integer value (no fraction or exponent).
bool json_integer(const char *text, json_span value, long *out);

#endif
