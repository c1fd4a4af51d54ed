/*
 * A stand-in python.exe for tests/test_windows_task.py, built with x86_64-w64-mingw32-gcc and run
 * by wine's cmd.exe from the generated run_database_backup.bat.
 *
 * It does what the test needs to see from the batch file, and nothing else:
 *   - writes a JSON record {"argv": [...], "cwd": "...", "command_line": "..."} to the file named
 *     by PYTHON_STUB_RECORD (a Windows path); argv is split by the C runtime exactly as a real
 *     Windows python.exe would see it, command_line is the raw string cmd.exe passed;
 *   - prints one line to stdout and one to stderr, both carrying PYTHON_STUB_MARKER, so the test
 *     can find them in the batch file's log;
 *   - with PYTHONIOENCODING=cpNNN (as the batch file sets it), prints a line of Chinese in that
 *     code page, as Python would;
 *   - exits with the number in PYTHON_STUB_EXIT_CODE (0 when unset).
 *
 * Build: x86_64-w64-mingw32-gcc -municode -O2 -o python.exe python_stub.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <wchar.h>
#include <windows.h>

/* Write one wide string as a JSON string literal in UTF-8. */
static void write_json_string(FILE *out, const wchar_t *text)
{
    char utf8[8];
    fputc('"', out);
    for (const wchar_t *p = text; *p != L'\0'; p++) {
        wchar_t c = *p;
        if (c == L'"' || c == L'\\') {
            fputc('\\', out);
            fputc((int)c, out);
        } else if (c < 0x20) {
            fprintf(out, "\\u%04x", (unsigned)c);
        } else if (c < 0x80) {
            fputc((int)c, out);
        } else {
            /* Surrogate pairs are written as two \u escapes, which JSON decoders join. */
            int n = WideCharToMultiByte(CP_UTF8, 0, p, 1, utf8, sizeof utf8, NULL, NULL);
            if (n > 0 && !(c >= 0xD800 && c <= 0xDFFF)) {
                fwrite(utf8, 1, (size_t)n, out);
            } else {
                fprintf(out, "\\u%04x", (unsigned)c);
            }
        }
    }
    fputc('"', out);
}

static int write_record(const wchar_t *record_path, int argc, wchar_t **argv)
{
    wchar_t cwd[MAX_PATH * 4];
    DWORD cwd_len = GetCurrentDirectoryW((DWORD)(sizeof cwd / sizeof cwd[0]), cwd);
    if (cwd_len == 0 || cwd_len >= sizeof cwd / sizeof cwd[0]) {
        wcscpy(cwd, L"<GetCurrentDirectoryW failed>");
    }

    FILE *out = _wfopen(record_path, L"wb");
    if (out == NULL) {
        fwprintf(stderr, L"python_stub: cannot write record file %ls\n", record_path);
        return 0;
    }
    fputs("{\"argv\": [", out);
    for (int i = 0; i < argc; i++) {
        if (i > 0) {
            fputs(", ", out);
        }
        write_json_string(out, argv[i]);
    }
    fputs("], \"cwd\": ", out);
    write_json_string(out, cwd);
    fputs(", \"command_line\": ", out);
    write_json_string(out, GetCommandLineW());
    fputs("}\n", out);
    return fclose(out) == 0;
}

/*
 * As Python does with PYTHONIOENCODING=cpNNN: write a line of Chinese to stdout in that code
 * page, so the test can read the batch file's log in the encoding the batch file pins.
 */
static void print_in_pinned_encoding(void)
{
    const wchar_t *encoding = _wgetenv(L"PYTHONIOENCODING");
    char bytes[256];
    if (encoding == NULL || wcsncmp(encoding, L"cp", 2) != 0) {
        return;
    }
    UINT codepage = (UINT)_wtoi(encoding + 2);
    int n = WideCharToMultiByte(codepage, 0, L"pinned encoding: \u5907\u4efd\u4efb\u52a1\u5b8c\u6210\n", -1,
                                bytes, sizeof bytes, NULL, NULL);
    if (n > 1) {
        fwrite(bytes, 1, (size_t)(n - 1), stdout);
        fflush(stdout);
    }
}

int wmain(int argc, wchar_t **argv)
{
    const wchar_t *record_path = _wgetenv(L"PYTHON_STUB_RECORD");
    const wchar_t *marker = _wgetenv(L"PYTHON_STUB_MARKER");
    const wchar_t *exit_code_text = _wgetenv(L"PYTHON_STUB_EXIT_CODE");

    if (marker == NULL) {
        marker = L"(no marker)";
    }
    /* Written before anything can fail, so the log shows the stub ran even if recording fails. */
    wprintf(L"python_stub stdout %ls\n", marker);
    fflush(stdout);
    print_in_pinned_encoding();
    fwprintf(stderr, L"python_stub stderr %ls\n", marker);
    fflush(stderr);

    if (record_path != NULL && !write_record(record_path, argc, argv)) {
        return 120;
    }
    return exit_code_text == NULL ? 0 : _wtoi(exit_code_text);
}
