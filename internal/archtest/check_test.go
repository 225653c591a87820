package archtest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A small module with the same shape as ours: a leaf, a core on it, a
// helper of the core, a shell where they meet, examples and a command.
const syntheticDoc = `# Architecture

## Packages and what each owns

Imports point one way.

| package | owns | imports of ours |
|---|---|---|
| ` + "`proto/` (`proto/pb`)" + ` | messages | — |
| ` + "`core/`" + ` | the core | ` + "`proto`" + ` |
| ` + "`core/check`" + ` | helpers for tests | ` + "`core`" + ` |
| ` + "`other/`" + ` | another core | — |
| ` + "`shell/`" + ` | where they meet | all of the above |
| ` + "`examples/a`, `examples/b`" + ` | examples | ` + "`shell`, `core`" + ` |
| ` + "`cmd/x`" + ` | main | ` + "`shell`, `examples`" + ` |

## Next section

| not | the | table |
`

func syntheticTable(t *testing.T) *table {
	t.Helper()
	tab, err := parseTable(syntheticDoc)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// allPackages is every package of the synthetic table, as if present.
func allPackages(tab *table) map[string]bool {
	pkgs := map[string]bool{}
	for p := range tab.row {
		pkgs[p] = true
	}
	return pkgs
}

func TestParseTableReadsEveryKindOfEntry(t *testing.T) {
	tab := syntheticTable(t)
	want := map[string][]string{
		"proto":      nil,
		"proto/pb":   nil,
		"core":       {"proto", "proto/pb"},                                // a row of two packages
		"core/check": {"core"},                                             // not core's subpackages
		"shell":      {"core", "core/check", "other", "proto", "proto/pb"}, // all of the above
		"examples/b": {"core", "shell"},
		"cmd/x":      {"examples/a", "examples/b", "shell"}, // a prefix names its rows
	}
	for p, w := range want {
		got := strings.Split(list(tab.allowed[p]), ", ")
		if w == nil {
			w = []string{"none of ours"}
		}
		if !slices.Equal(got, w) {
			t.Errorf("%s may import %v, want %v", p, got, w)
		}
	}
	if len(tab.rows) != 7 {
		t.Errorf("read %d rows, want 7 (the table after the next heading is not ours)", len(tab.rows))
	}
}

func TestParseTableRefusesWhatItCannotRead(t *testing.T) {
	for name, c := range map[string]struct{ from, to, want string }{
		"unknown entry": {"| `proto`", "| `protos`", `"protos" names no row`},
		"prose":         {"| all of the above", "| everything", `cannot read "everything"`},
		"no section":    {"## Packages and what each owns", "## Packages", "has no section"},
		"two rows":      {"`other/`", "`core/`", "core has two rows"},
	} {
		doc := strings.Replace(syntheticDoc, c.from, c.to, 1)
		if doc == syntheticDoc {
			t.Fatalf("%s: %q not in the synthetic doc", name, c.from)
		}
		_, err := parseTable(doc)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: parseTable error %v, want one containing %q", name, err, c.want)
		}
	}
}

func TestCheckFindsEveryBreach(t *testing.T) {
	tab := syntheticTable(t)
	allowedFiles := []goFile{
		{path: "core/c.go", pkg: "core", imports: []string{"proto/pb"}},
		{path: "core/c_test.go", pkg: "core", test: true, imports: []string{"core", "core/check", "proto"}},
		{path: "core/check/c_test.go", pkg: "core/check", test: true, imports: []string{"proto/pb"}}, // a dependency of a dependency
		{path: "shell/s.go", pkg: "shell", imports: []string{"core", "core/check", "other", "proto/pb"}},
		{path: "shell/s_test.go", pkg: "shell", test: true, imports: []string{"shell", "examples/a", "examples/b"}},
		{path: "examples/a/a.go", pkg: "examples/a", imports: []string{"shell", "core"}},
		{path: "cmd/x/main.go", pkg: "cmd/x", imports: []string{"shell", "examples/b"}},
	}
	if vs, arrows := check(tab, allowedFiles, allPackages(tab)); len(vs) != 0 || arrows != 16 {
		t.Fatalf("allowed graph: %d arrows, violations %v", arrows, vs)
	}
	for _, c := range []struct {
		name     string
		file     goFile
		drop     string // a package directory missing from the tree
		key, msg string
	}{
		{"core imports its shell", goFile{path: "core/bad.go", pkg: "core", imports: []string{"shell"}},
			"", "core -> shell", "core/bad.go: core imports shell, against ARCHITECTURE.md's table, which lets core import only: proto, proto/pb"},
		{"a core imports another core", goFile{path: "other/o.go", pkg: "other", imports: []string{"core"}},
			"", "other -> core", "other/o.go: other imports core"},
		{"examples import each other", goFile{path: "examples/a/a.go", pkg: "examples/a", imports: []string{"examples/b"}},
			"", "examples/a -> examples/b", "examples/a imports examples/b"},
		{"a leaf imports its row-mate", goFile{path: "proto/p.go", pkg: "proto", imports: []string{"proto/pb"}},
			"", "proto -> proto/pb", "lets proto import only: none of ours"},
		{"a core's test pulls in the shell", goFile{path: "core/x_test.go", pkg: "core", test: true, imports: []string{"shell"}},
			"", "core -> shell (test)", "core/x_test.go: a test of core imports shell: per ARCHITECTURE.md's table, shell depends on core/check, other"},
		{"a core's test pulls in an example", goFile{path: "core/x_test.go", pkg: "core", test: true, imports: []string{"examples/a"}},
			"", "core -> examples/a (test)", "examples/a depends on core/check, other, shell, which core does not"},
		{"a helper's test pulls in another core", goFile{path: "core/check/c_test.go", pkg: "core/check", test: true, imports: []string{"other"}},
			"", "core/check -> other (test)", "a test of core/check imports other"},
		{"a package not in the table", goFile{path: "core/sim/sim.go", pkg: "core/sim", imports: []string{"core"}},
			"", "core/sim: no row", "package core/sim not in ARCHITECTURE.md's table"},
		{"a test imports a package not in the table", goFile{path: "shell/y_test.go", pkg: "shell", test: true, imports: []string{"core/sim"}},
			"", "shell -> core/sim (test)", "a test of shell imports core/sim: core/sim is not in ARCHITECTURE.md's table"},
		{"a row with no package", goFile{path: "core/c.go", pkg: "core"},
			"other", "other: no Go files", "ARCHITECTURE.md's table has a row for other, but the module has no Go files in other"},
	} {
		pkgs := allPackages(tab)
		pkgs[c.file.pkg] = true
		delete(pkgs, c.drop)
		vs, _ := check(tab, append(slices.Clone(allowedFiles), c.file), pkgs)
		found := false
		for _, v := range vs {
			found = found || v.key == c.key && strings.Contains(v.msg, c.msg)
		}
		if !found || len(vs) != 1 {
			t.Errorf("%s: want one violation %q with %q, got %v", c.name, c.key, c.msg, vs)
		}
	}
}

// TestCheckModuleOnAScratchModule runs the whole path (go.mod, the
// document, parsing files from disk) on a module written to a temporary
// directory, first obeying the table, then with a forbidden import added.
func TestCheckModuleOnAScratchModule(t *testing.T) {
	root := t.TempDir()
	write := func(path, text string) {
		t.Helper()
		path = filepath.Join(root, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n\ngo 1.26\n")
	write("ARCHITECTURE.md", syntheticDoc)
	for _, p := range []string{"proto", "proto/pb", "core/check", "other", "examples/a", "examples/b"} {
		write(p+"/doc.go", "package "+filepath.Base(p)+"\n")
	}
	write("core/core.go", "package core\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/m/proto/pb\"\n)\n")
	write("shell/shell.go", "package shell\n\nimport _ \"example.com/m/core\"\n")
	write("cmd/x/main.go", "package main\n\nimport (\n\t_ \"example.com/m/examples/a\"\n\t_ \"example.com/m/shell\"\n)\n")
	write("core/testdata/bad.go", "package bad\n\nimport _ \"example.com/m/shell\"\n") // not a package of the module
	write(".hidden/bad.go", "package bad\n\nimport _ \"example.com/m/shell\"\n")
	res, err := checkModule(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.violations) != 0 || res.arrows != 4 {
		t.Fatalf("a module obeying its table: %d arrows, violations %v", res.arrows, res.violations)
	}
	write("core/core_shell.go", "package core\n\nimport \"example.com/m/shell\"\n")
	res, err = checkModule(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.violations) != 1 || !strings.HasPrefix(res.violations[0].msg, "core/core_shell.go: core imports shell, against ARCHITECTURE.md's table") {
		t.Fatalf("a forbidden import on disk: violations %v", res.violations)
	}
}
