"""jupyter_kernel_test's conformance suite against `spindle kernel start`,
with every applicable sample filled in."""

import unittest

import jupyter_kernel_test

import conftest  # noqa: F401  (installs the kernelspec)


class SpindleKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "spindle"
    language_name = "lua"
    file_extension = ".lua"

    code_hello_world = 'print("hello, world")'
    code_stderr = 'io.stderr:write("oops\\n")'

    completion_samples = [
        {"text": "pri", "matches": {"print"}},
        {"text": "string.up", "matches": {"upper"}},
        {"text": "table.ins", "matches": {"insert"}},
        {"text": "require(\"spindle\").sub", "matches": {"submit", "submit_all"}},
    ]

    complete_code_samples = ["x = 1", "1 + 1", "for i = 1, 2 do end", ""]
    incomplete_code_samples = ["for i = 1, 2 do", 'print("a"', "function f()", "t = {"]
    invalid_code_samples = ["x = = 1", "1 +* 2", "end"]

    code_generate_error = 'error("boom")'

    code_execute_result = [
        {"code": "1 + 2", "result": "3"},
        {"code": '"a" .. "b"', "result": '"ab"'},
        {"code": "x = 6\nx * 7", "result": "42"},
    ]

    code_display_data = [
        {"code": 'require("spindle").display(require("spindle").html("<b>hi</b>"))', "mime": "text/html"},
        {"code": 'require("spindle").display({ a = 1 })', "mime": "text/html"},
        {
            "code": 'local s = require("spindle") s.display(s.chart { kind = "line", y = { 1, 3, 2 } })',
            "mime": "image/svg+xml",
        },
    ]

    code_history_pattern = "1 + *"
    supported_history_operations = ("tail", "range", "search")

    code_inspect_sample = 'require("spindle").submit'

    code_clear_output = 'require("spindle").clear_output()'

    code_page_something = 'local s = require("spindle") s.help(s.submit)'


if __name__ == "__main__":
    unittest.main()
