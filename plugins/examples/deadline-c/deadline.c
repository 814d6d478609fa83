// An example cluster policy written in C, to show the plugin contract is language-neutral.
//
// Every agent Job gets a deadline: a Job without `spec.activeDeadlineSeconds` gets
// DEFAULT_DEADLINE; a Job asking for more than MAX_DEADLINE is denied. The Job crosses the
// boundary as JSON text; this plugin reads it with a small scanner (json.c) and edits the text.
//
// Built with Debian's clang and wasi-libc (malloc and string functions only: the component
// imports nothing but kubetask:plugin/host) and bindings from `wit-bindgen c` (bindings/).
// See build.sh.

#include <stdlib.h>
#include <string.h>

#include "bindings/plugin.h"
#include "json.h"

#define DEFAULT_DEADLINE 3600L
#define MAX_DEADLINE 21600L
#define FIELD "activeDeadlineSeconds"

// Text building without stdio (stdio would pull in WASI file-descriptor imports).
typedef struct {
  char buf[256];
  size_t len;
} text_t;

static void append(text_t *t, const char *s) {
  size_t n = strlen(s);
  if (n > sizeof t->buf - 1 - t->len) n = sizeof t->buf - 1 - t->len;
  memcpy(t->buf + t->len, s, n);
  t->len += n;
  t->buf[t->len] = '\0';
}

static void append_long(text_t *t, long value) {
  char digits[24];
  size_t i = sizeof digits;
  digits[--i] = '\0';
  unsigned long magnitude = value < 0 ? 0UL - (unsigned long)value : (unsigned long)value;
  do {
    digits[--i] = (char)('0' + magnitude % 10);
    magnitude /= 10;
  } while (magnitude != 0);
  if (value < 0) digits[--i] = '-';
  append(t, digits + i);
}

static void log_line(kubetask_plugin_host_level_t level, const char *text) {
  plugin_string_t message;
  plugin_string_set(&message, text);
  kubetask_plugin_host_log(level, &message);
}

static bool fail(plugin_render_error_t *err, uint8_t tag, const char *text) {
  err->tag = tag;
  if (tag == KUBETASK_PLUGIN_TYPES_RENDER_ERROR_DENIED) {
    plugin_string_dup(&err->val.denied, text);
  } else {
    plugin_string_dup(&err->val.internal, text);
  }
  return false;
}

// The new Job text: `job` with `"activeDeadlineSeconds":<seconds>` inserted as the first member
// of the object that starts at `spec_open` (the offset of its `{`).
static plugin_string_t insert_deadline(plugin_string_t job, size_t spec_open, bool spec_empty) {
  text_t member = {.len = 0};
  append(&member, "\"" FIELD "\":");
  append_long(&member, DEFAULT_DEADLINE);
  if (!spec_empty) append(&member, ",");
  size_t extra = member.len;
  plugin_string_t out = {malloc(job.len + extra), job.len + extra};
  if (out.ptr == NULL) abort();
  memcpy(out.ptr, job.ptr, spec_open + 1);
  memcpy(out.ptr + spec_open + 1, member.buf, extra);
  memcpy(out.ptr + spec_open + 1 + extra, job.ptr + spec_open + 1, job.len - spec_open - 1);
  return out;
}

bool exports_plugin_render(plugin_render_request_t *request, plugin_draft_t *ret,
                           plugin_render_error_t *err) {
  bool ok = false;
  text_t message = {.len = 0};
  if (!request->draft.is_some) {
    ok = fail(err, KUBETASK_PLUGIN_TYPES_RENDER_ERROR_INTERNAL,
              "no draft to work on: this plugin must run after the built-in renderer");
    goto done;
  }
  plugin_draft_t *draft = &request->draft.val;
  const char *text = (const char *)draft->job.ptr;
  size_t len = draft->job.len;
  json_span spec = json_member(text, len, json_root(text, len), "spec");
  if (spec.start == JSON_NONE || text[spec.start] != '{') {
    ok = fail(err, KUBETASK_PLUGIN_TYPES_RENDER_ERROR_INTERNAL, "the draft Job has no spec object");
    goto done;
  }
  json_span deadline = json_member(text, len, spec, FIELD);
  plugin_string_t job;
  if (deadline.start == JSON_NONE) {
    bool empty = json_is_empty_object(text, spec);
    job = insert_deadline(draft->job, spec.start, empty);
    append(&message, "set spec." FIELD " to ");
    append_long(&message, DEFAULT_DEADLINE);
    log_line(KUBETASK_PLUGIN_HOST_LEVEL_DEBUG, message.buf);
  } else {
    long seconds = 0;
    if (!json_integer(text, deadline, &seconds)) {
      ok = fail(err, KUBETASK_PLUGIN_TYPES_RENDER_ERROR_INTERNAL,
                "the draft Job's spec." FIELD " is not an integer");
      goto done;
    }
    if (seconds > MAX_DEADLINE) {
      append(&message, "Job spec." FIELD " is ");
      append_long(&message, seconds);
      append(&message, "; agent Jobs on this cluster may run at most ");
      append_long(&message, MAX_DEADLINE);
      append(&message, " seconds");
      ok = fail(err, KUBETASK_PLUGIN_TYPES_RENDER_ERROR_DENIED, message.buf);
      goto done;
    }
    // Within bounds: the Job is returned as it came.
    job = draft->job;
    draft->job = (plugin_string_t){NULL, 0};
  }
  // The ConfigMaps and warnings pass on unchanged: move them into the result.
  ret->job = job;
  ret->config_maps = draft->config_maps;
  ret->warnings = draft->warnings;
  draft->config_maps = (plugin_list_string_t){NULL, 0};
  draft->warnings = (plugin_list_string_t){NULL, 0};
  ok = true;
done:
  plugin_render_request_free(request);
  return ok;
}
