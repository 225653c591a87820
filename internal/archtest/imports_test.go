package archtest

import (
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// knownGaps are what the code has and ARCHITECTURE.md's table does not say
// yet, by violation key, each with why it is tolerated. The test logs them
// instead of failing; it fails when one no longer occurs, so the list only
// shrinks. Fix a gap in the document (or the code) and delete its line; do
// not add lines to make the test pass.
var knownGaps = map[string]string{}

// TestImportDirection checks every package of the module against
// ARCHITECTURE.md's table; see the package doc for the rules.
func TestImportDirection(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	res, err := checkModule(root)
	if err != nil {
		t.Fatal(err)
	}
	// Guard against passing vacuously: the scan must have seen the
	// module's packages and arrows between them.
	if !res.packages["actors"] || !res.packages["collections"] || res.arrows < 20 {
		t.Fatalf("scan of %s found packages %v and %d arrows: the scan is broken", root, slices.Sorted(maps.Keys(res.packages)), res.arrows)
	}
	seen := map[string]bool{}
	for _, v := range res.violations {
		seen[v.key] = true
		if why, ok := knownGaps[v.key]; ok {
			t.Logf("known gap (%s): %s", why, v.msg)
			continue
		}
		t.Error(v.msg)
	}
	for _, k := range slices.Sorted(maps.Keys(knownGaps)) {
		if !seen[k] {
			t.Errorf("known gap %q no longer occurs: delete it from knownGaps", k)
		}
	}
	t.Logf("%d packages, %d arrows checked", len(res.packages), res.arrows)
}

// table is ARCHITECTURE.md's table "Packages and what each owns".
type table struct {
	rows    [][]string                 // the packages of each row, in document order
	row     map[string]int             // package -> its row
	allowed map[string]map[string]bool // package -> the module's packages its non-test files may import
	closure map[string]map[string]bool // package -> itself and everything reachable by allowed arrows
}

const tableHeading = "## Packages and what each owns"

var backticked = regexp.MustCompile("`([^`]*)`")

// parseTable reads the import direction table out of ARCHITECTURE.md.
func parseTable(md string) (*table, error) {
	_, after, ok := strings.Cut(md, "\n"+tableHeading+"\n")
	if !ok {
		return nil, fmt.Errorf("ARCHITECTURE.md has no section %q", tableHeading)
	}
	if i := strings.Index(after, "\n## "); i >= 0 {
		after = after[:i]
	}
	var lines [][]string
	for l := range strings.SplitSeq(after, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		lines = append(lines, cells)
	}
	if len(lines) < 3 {
		return nil, fmt.Errorf("section %q holds no table", tableHeading)
	}
	col := slices.Index(lines[0], "imports of ours")
	if lines[0][0] != "package" || col < 0 {
		return nil, fmt.Errorf("table header %q: want columns \"package\" first and \"imports of ours\"", lines[0])
	}
	t := &table{row: map[string]int{}, allowed: map[string]map[string]bool{}, closure: map[string]map[string]bool{}}
	body := lines[2:] // lines[1] is |---|---|
	for i, cells := range body {
		var pkgs []string
		for _, m := range backticked.FindAllStringSubmatch(cells[0], -1) {
			p := strings.TrimSuffix(m[1], "/")
			if j, dup := t.row[p]; dup {
				return nil, fmt.Errorf("package %s has two rows (%d and %d)", p, j+1, i+1)
			}
			t.row[p] = i
			pkgs = append(pkgs, p)
		}
		if len(pkgs) == 0 {
			return nil, fmt.Errorf("table row %q names no package", cells[0])
		}
		if len(cells) <= col {
			return nil, fmt.Errorf("table row of %s has no %q cell", pkgs[0], "imports of ours")
		}
		t.rows = append(t.rows, pkgs)
	}
	for i, cells := range body {
		allowed := map[string]bool{}
		switch text := cells[col]; text {
		case "—", "-":
		case "all of the above":
			for _, above := range t.rows[:i] {
				for _, p := range above {
					allowed[p] = true
				}
			}
		default:
			if rest := strings.Trim(backticked.ReplaceAllString(text, ""), ", "); rest != "" && rest != "and" {
				return nil, fmt.Errorf("row of %s: cannot read %q in %q: write `package` names separated by commas, %q or %q",
					t.rows[i][0], rest, text, "all of the above", "—")
			}
			for _, m := range backticked.FindAllStringSubmatch(text, -1) {
				named, err := t.resolve(strings.TrimSuffix(m[1], "/"))
				if err != nil {
					return nil, fmt.Errorf("row of %s: %w", t.rows[i][0], err)
				}
				for _, p := range named {
					allowed[p] = true
				}
			}
		}
		for _, p := range t.rows[i] {
			t.allowed[p] = allowed
		}
	}
	for p := range t.row {
		c := map[string]bool{}
		var visit func(string)
		visit = func(q string) {
			if c[q] {
				return
			}
			c[q] = true
			for r := range t.allowed[q] {
				visit(r)
			}
		}
		visit(p)
		t.closure[p] = c
	}
	return t, nil
}

// resolve returns the packages an entry of the "imports of ours" column
// names: those of the row that lists it, or else of every row whose
// packages lie under it.
func (t *table) resolve(name string) ([]string, error) {
	if i, ok := t.row[name]; ok {
		return t.rows[i], nil
	}
	var out []string
	for _, pkgs := range t.rows {
		for _, p := range pkgs {
			if strings.HasPrefix(p, name+"/") {
				out = append(out, pkgs...)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q names no row of the table", name)
	}
	return out, nil
}

// goFile is one Go file and which of the module's packages it imports.
type goFile struct {
	path    string   // relative to the module root, slash-separated
	pkg     string   // its directory relative to the module root
	test    bool     // a _test.go file
	imports []string // the module's packages it imports, relative to the module path
}

// scan parses the imports of every Go file of the module at root (module
// path module), skipping testdata, vendor, hidden directories and nested
// modules, and lists the package directories it found.
func scan(root, module string) ([]goFile, map[string]bool, error) {
	var files []goFile
	pkgs := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root {
				if name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
					return filepath.SkipDir
				}
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		gf := goFile{path: rel, pkg: filepath.ToSlash(filepath.Dir(rel)), test: strings.HasSuffix(rel, "_test.go")}
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return fmt.Errorf("%s: import %s: %w", rel, imp.Path.Value, err)
			}
			switch {
			case p == module:
				gf.imports = append(gf.imports, ".")
			case strings.HasPrefix(p, module+"/"):
				gf.imports = append(gf.imports, strings.TrimPrefix(p, module+"/"))
			}
		}
		files = append(files, gf)
		pkgs[gf.pkg] = true
		return nil
	})
	return files, pkgs, err
}

// violation is one breach of the table; key names it for knownGaps.
type violation struct {
	key string // "a -> b", "a -> b (test)", "a: no row" or "a: no Go files"
	msg string
}

// check lists the breaches of t by files in the package directories pkgs.
func check(t *table, files []goFile, pkgs map[string]bool) (vs []violation, arrows int) {
	for _, p := range slices.Sorted(maps.Keys(pkgs)) {
		if _, ok := t.row[p]; !ok {
			vs = append(vs, violation{p + ": no row", fmt.Sprintf(
				"package %s not in ARCHITECTURE.md's table (%q): add a row saying what it owns and which of our packages it imports",
				p, strings.TrimPrefix(tableHeading, "## "))})
		}
	}
	for _, p := range slices.Sorted(maps.Keys(t.row)) {
		if !pkgs[p] {
			vs = append(vs, violation{p + ": no Go files", fmt.Sprintf(
				"ARCHITECTURE.md's table has a row for %s, but the module has no Go files in %s", p, p)})
		}
	}
	for _, f := range files {
		if _, ok := t.row[f.pkg]; !ok {
			continue // reported above
		}
		for _, imp := range f.imports {
			arrows++
			if t.allowed[f.pkg][imp] {
				continue
			}
			if !f.test {
				vs = append(vs, violation{f.pkg + " -> " + imp, fmt.Sprintf(
					"%s: %s imports %s, against ARCHITECTURE.md's table, which lets %s import only: %s",
					f.path, f.pkg, imp, f.pkg, list(t.allowed[f.pkg]))})
				continue
			}
			if why := t.testImportRefused(f.pkg, imp); why != "" {
				vs = append(vs, violation{f.pkg + " -> " + imp + " (test)", fmt.Sprintf(
					"%s: a test of %s imports %s: %s", f.path, f.pkg, imp, why)})
			}
		}
	}
	return vs, arrows
}

// testImportRefused says why a test file of pkg may not import imp, or ""
// if it may: imp is pkg itself or something pkg depends on (directly or
// not), or a helper built on pkg (imp depends on pkg) that depends on
// nothing pkg does not.
func (t *table) testImportRefused(pkg, imp string) string {
	if t.closure[pkg][imp] {
		return ""
	}
	if _, ok := t.row[imp]; !ok {
		return fmt.Sprintf("%s is not in ARCHITECTURE.md's table", imp)
	}
	rule := fmt.Sprintf("a test of %s may import only %s, what %s depends on, and helpers built on %s that depend on nothing %s does not",
		pkg, pkg, pkg, pkg, pkg)
	if !t.closure[imp][pkg] {
		return fmt.Sprintf("per ARCHITECTURE.md's table, %s does not depend on %s: %s", imp, pkg, rule)
	}
	var beyond []string
	for q := range t.closure[imp] {
		if q != imp && !t.closure[pkg][q] {
			beyond = append(beyond, q)
		}
	}
	if len(beyond) == 0 {
		return ""
	}
	slices.Sort(beyond)
	return fmt.Sprintf("per ARCHITECTURE.md's table, %s depends on %s, which %s does not: %s",
		imp, strings.Join(beyond, ", "), pkg, rule)
}

func list(set map[string]bool) string {
	if len(set) == 0 {
		return "none of ours"
	}
	return strings.Join(slices.Sorted(maps.Keys(set)), ", ")
}

// result is what checkModule found.
type result struct {
	violations []violation
	packages   map[string]bool
	arrows     int
}

// checkModule checks the module at root against its ARCHITECTURE.md.
func checkModule(root string) (result, error) {
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return result{}, err
	}
	module := ""
	for l := range strings.SplitSeq(string(gomod), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "module "); ok {
			module = strings.Trim(strings.TrimSpace(rest), `"`)
			break
		}
	}
	if module == "" {
		return result{}, errors.New("go.mod names no module")
	}
	md, err := os.ReadFile(filepath.Join(root, "ARCHITECTURE.md"))
	if err != nil {
		return result{}, err
	}
	tab, err := parseTable(string(md))
	if err != nil {
		return result{}, err
	}
	files, pkgs, err := scan(root, module)
	if err != nil {
		return result{}, err
	}
	vs, arrows := check(tab, files, pkgs)
	return result{violations: vs, packages: pkgs, arrows: arrows}, nil
}

// moduleRoot is the nearest directory at or above the working directory
// holding a go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
