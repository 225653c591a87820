package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSubcommandDispatch(t *testing.T) {
	cases := []struct {
		args []string
		code int
		err  string
	}{
		{nil, 2, "usage"},
		{[]string{"help"}, 0, "ricochet"},
		{[]string{"nope"}, 2, "unknown subcommand"},
		{[]string{"ricochet", "-h"}, 0, "-receivers"},
		{[]string{"ricochet", "--receivers", "1"}, 1, "--receivers must be >= 2"},
		{[]string{"http", "-h"}, 0, "-concurrency"},
	}
	for _, tc := range cases {
		var out, errOut bytes.Buffer
		if code := run(tc.args, &out, &errOut); code != tc.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tc.args, code, tc.code, errOut.String())
		}
		if !strings.Contains(errOut.String(), tc.err) {
			t.Errorf("%v: stderr %q lacks %q", tc.args, errOut.String(), tc.err)
		}
		if out.Len() != 0 {
			t.Errorf("%v: wrote to stdout: %q", tc.args, out.String())
		}
	}
}
