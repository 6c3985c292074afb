package main

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// apiPackage is what the reference shows of one API package.
type apiPackage struct {
	dir            string
	group, version string
	doc            []paragraph
	// types are the documented types: the root kinds, then every struct
	// type of the package they reach, in the order a reader meets them.
	types  []*typeInfo
	consts []constGroup
	// externals are the types of other packages the fields use, in order
	// of first use.
	externals []externalType
}

// typeInfo is one documented struct type.
type typeInfo struct {
	name     string
	doc      []paragraph
	root     bool
	rules    []string // messages of the type's XValidation rules
	resource resourceInfo
	fields   []fieldInfo
}

// resourceInfo is what the markers of a root kind say about its resource.
type resourceInfo struct {
	shortNames        []string
	statusSubresource bool
	columns           []printColumn
}

type printColumn struct {
	name, jsonPath string
	wide           bool
}

// fieldInfo is one row of a type's table.
type fieldInfo struct {
	name       string // the JSON name
	typ        string // markdown
	required   bool
	def        string
	validation []string
	doc        []paragraph
}

// constGroup is a const block of string constants, such as the condition
// reasons.
type constGroup struct {
	title  string
	doc    []paragraph
	consts []constInfo
}

type constInfo struct {
	name, value string
	doc         []paragraph
}

// externalType describes a type of another package that fields use.
type externalType struct {
	name, doc string
}

// externalTypes are the types of other packages the reference knows how to
// describe, by import path and name. A field of any other foreign type is
// an error, so that the reference never shows a type it cannot explain.
var externalTypes = map[string]externalType{
	"k8s.io/apimachinery/pkg/apis/meta/v1.ObjectMeta": {
		name: "ObjectMeta",
		doc:  "Standard object metadata: `name`, `namespace`, `labels`, `annotations` and the fields the API server sets. See the [Kubernetes reference](https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/object-meta/).",
	},
	"k8s.io/apimachinery/pkg/apis/meta/v1.Duration": {
		name: "Duration",
		doc:  "A duration as a string: a number and a unit (`ms`, `s`, `m`, `h`), repeated, such as `30s`, `5m` or `1h30m`.",
	},
	"k8s.io/apimachinery/pkg/apis/meta/v1.Time": {
		name: "Time",
		doc:  "A point in time as an RFC 3339 string, such as `2025-01-31T12:00:00Z`.",
	},
	"k8s.io/apimachinery/pkg/apis/meta/v1.Condition": {
		name: "Condition",
		doc:  "A standard Kubernetes condition: `type`, `status` (`True`, `False` or `Unknown`), `reason` (one word, CamelCase), `message`, `lastTransitionTime` and `observedGeneration` (the `metadata.generation` it describes).",
	},
	"k8s.io/apimachinery/pkg/api/resource.Quantity": {
		name: "Quantity",
		doc:  "A Kubernetes quantity, here a number of bytes: a plain number, or one with a suffix such as `512Ki`, `100Mi`, `2Gi` (powers of 1024) or `500M`, `1G` (powers of 1000).",
	},
	"k8s.io/api/core/v1.LocalObjectReference": {
		name: "LocalObjectReference",
		doc:  "The name of an object in the same namespace: `{name: NAME}`.",
	},
}

// builtinTypes name Go's basic types as a YAML author knows them.
var builtinTypes = map[string]string{
	"string": "string", "bool": "boolean",
	"int": "integer", "int32": "integer", "int64": "integer",
	"uint32": "integer", "uint64": "integer",
	"float32": "number", "float64": "number",
}

// decl is a type declared in the package.
type decl struct {
	spec    *ast.TypeSpec
	doc     *ast.CommentGroup
	imports map[string]string // file's import name → path
	order   int
}

// parsePackage reads the API package in dir: every .go file except tests
// and generated code.
func parsePackage(dir string) (*apiPackage, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the API package: %w", err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") || strings.HasPrefix(name, "zz_generated") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no Go files to document", dir)
	}

	p := &apiPackage{dir: dir, version: files[0].Name.Name}
	decls := map[string]*decl{}
	// Constants declared one by one share one section, after the blocks.
	other := constGroup{title: "Other constants"}
	for _, f := range files {
		if f.Doc != nil {
			text, markers := splitComment(f.Doc)
			if len(text) > 0 {
				p.doc = text
			}
			for _, m := range markers {
				if v, ok := strings.CutPrefix(m, "groupName="); ok {
					p.group = v
				}
			}
		}
		imports := importNames(f)
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok {
				continue
			}
			switch gd.Tok {
			case token.TYPE:
				for _, s := range gd.Specs {
					ts := s.(*ast.TypeSpec)
					doc := ts.Doc
					if doc == nil && !gd.Lparen.IsValid() {
						doc = gd.Doc
					}
					decls[ts.Name.Name] = &decl{spec: ts, doc: doc, imports: imports, order: len(decls)}
				}
			case token.CONST:
				g, ok := constGroupOf(gd)
				switch {
				case !ok:
				case gd.Lparen.IsValid():
					p.consts = append(p.consts, g)
				default:
					other.consts = append(other.consts, g.consts...)
				}
			}
		}
	}
	if len(other.consts) > 0 {
		p.consts = append(p.consts, other)
	}
	if p.group == "" {
		return nil, fmt.Errorf("%s: no +groupName marker in a package comment", dir)
	}

	var roots []*decl
	for _, d := range decls {
		_, markers := splitComment(d.doc)
		if slices.Contains(markers, "kubebuilder:object:root=true") && !isList(d) {
			roots = append(roots, d)
		}
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%s: no type is marked +kubebuilder:object:root=true", dir)
	}
	slices.SortFunc(roots, func(a, b *decl) int { return a.order - b.order })

	w := &walker{pkg: p, decls: decls, seen: map[string]bool{}, externals: map[string]bool{}}
	for _, d := range roots {
		if err := w.visit(d, true); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// isList reports whether d is the list kind of a root kind.
func isList(d *decl) bool {
	st, ok := d.spec.Type.(*ast.StructType)
	if !ok || !strings.HasSuffix(d.spec.Name.Name, "List") {
		return false
	}
	for _, f := range st.Fields.List {
		for _, n := range f.Names {
			if n.Name == "Items" {
				return true
			}
		}
	}
	return false
}

func importNames(f *ast.File) map[string]string {
	m := map[string]string{}
	for _, imp := range f.Imports {
		path, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			continue
		}
		name := path[strings.LastIndexByte(path, '/')+1:]
		if imp.Name != nil {
			name = imp.Name.Name
		}
		m[name] = path
	}
	return m
}

// walker documents the types reachable from the root kinds, depth first,
// so that each type follows the one that first uses it.
type walker struct {
	pkg       *apiPackage
	decls     map[string]*decl
	seen      map[string]bool
	externals map[string]bool
}

func (w *walker) visit(d *decl, root bool) error {
	name := d.spec.Name.Name
	if w.seen[name] {
		return nil
	}
	w.seen[name] = true
	st, ok := d.spec.Type.(*ast.StructType)
	if !ok {
		return fmt.Errorf("type %s: only struct types are documented as sections", name)
	}
	t := &typeInfo{name: name, root: root}
	var markers []string
	t.doc, markers = splitComment(d.doc)
	for _, m := range markers {
		switch {
		case strings.HasPrefix(m, "kubebuilder:validation:XValidation:"):
			msg, err := xvalidationMessage(m)
			if err != nil {
				return fmt.Errorf("type %s: %w", name, err)
			}
			t.rules = append(t.rules, msg)
		case m == "kubebuilder:subresource:status":
			t.resource.statusSubresource = true
		case strings.HasPrefix(m, "kubebuilder:resource:"):
			args, err := parseArgs(strings.TrimPrefix(m, "kubebuilder:resource:"))
			if err != nil {
				return fmt.Errorf("type %s: %s: %w", name, m, err)
			}
			if s := args["shortName"]; s != "" {
				t.resource.shortNames = strings.Split(s, ";")
			}
		case strings.HasPrefix(m, "kubebuilder:printcolumn:"):
			args, err := parseArgs(strings.TrimPrefix(m, "kubebuilder:printcolumn:"))
			if err != nil {
				return fmt.Errorf("type %s: %s: %w", name, m, err)
			}
			t.resource.columns = append(t.resource.columns, printColumn{
				name: args["name"], jsonPath: args["JSONPath"], wide: args["priority"] != "" && args["priority"] != "0",
			})
		}
	}
	w.pkg.types = append(w.pkg.types, t)

	// Fields first, then the types they use: a type's section follows the
	// section of the type that first uses it, in field order.
	var next []*decl
	if root {
		t.fields = append(t.fields,
			fieldInfo{name: "apiVersion", typ: "string", required: true, doc: []paragraph{{lines: []string{"`" + w.pkg.group + "/" + w.pkg.version + "`"}}}},
			fieldInfo{name: "kind", typ: "string", required: true, doc: []paragraph{{lines: []string{"`" + name + "`"}}}},
		)
	}
	for _, f := range st.Fields.List {
		fields, uses, err := w.field(d, f)
		if err != nil {
			return fmt.Errorf("type %s: %w", name, err)
		}
		t.fields = append(t.fields, fields...)
		next = append(next, uses...)
	}
	for _, u := range next {
		if err := w.visit(u, false); err != nil {
			return err
		}
	}
	return nil
}

// field turns one struct field into table rows (an inlined struct gives
// its fields) and returns the package's struct types it uses.
func (w *walker) field(owner *decl, f *ast.Field) ([]fieldInfo, []*decl, error) {
	tag := ""
	if f.Tag != nil {
		raw, err := strconv.Unquote(f.Tag.Value)
		if err != nil {
			return nil, nil, err
		}
		tag = reflectTag(raw, "json")
	}
	jsonName, opts, _ := strings.Cut(tag, ",")
	if jsonName == "-" {
		return nil, nil, nil
	}
	inline := slices.Contains(strings.Split(opts, ","), "inline")
	if len(f.Names) == 0 && inline {
		// Embedded: TypeMeta is the apiVersion and kind rows of a root
		// kind; an embedded struct of this package gives its fields.
		if sel, ok := f.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "TypeMeta" {
			return nil, nil, nil
		}
		id, ok := f.Type.(*ast.Ident)
		if !ok || w.decls[id.Name] == nil {
			return nil, nil, fmt.Errorf("embedded field %s: only TypeMeta and structs of this package can be inlined", exprString(f.Type))
		}
		st, ok := w.decls[id.Name].spec.Type.(*ast.StructType)
		if !ok {
			return nil, nil, fmt.Errorf("embedded field %s is not a struct", id.Name)
		}
		var rows []fieldInfo
		var uses []*decl
		for _, ef := range st.Fields.List {
			r, u, err := w.field(w.decls[id.Name], ef)
			if err != nil {
				return nil, nil, err
			}
			rows, uses = append(rows, r...), append(uses, u...)
		}
		return rows, uses, nil
	}
	goName := exprString(f.Type)
	if len(f.Names) > 0 {
		goName = f.Names[0].Name
	}
	if jsonName == "" {
		jsonName = goName
	}

	doc, markers := splitComment(f.Doc)
	fi := fieldInfo{name: jsonName, doc: doc, required: !strings.Contains(","+opts+",", ",omitempty,")}
	typ, uses, typeMarkers, err := w.typeOf(owner, f.Type)
	if err != nil {
		return nil, nil, fmt.Errorf("field %s: %w", jsonName, err)
	}
	fi.typ = typ
	// Markers on a named non-struct type apply to its fields, as
	// controller-gen applies them; the field's own come after.
	for _, m := range append(typeMarkers, markers...) {
		if err := fi.applyMarker(m); err != nil {
			return nil, nil, fmt.Errorf("field %s: %w", jsonName, err)
		}
	}
	return []fieldInfo{fi}, uses, nil
}

// applyMarker records what a field marker says about validation,
// requiredness and defaults.
func (fi *fieldInfo) applyMarker(m string) error {
	key, value, _ := strings.Cut(m, "=")
	switch key {
	case "required", "kubebuilder:validation:Required":
		fi.required = true
	case "optional", "kubebuilder:validation:Optional":
		fi.required = false
	case "kubebuilder:default":
		fi.def = unquoteMarkerValue(value)
	case "kubebuilder:validation:MinLength":
		fi.validation = append(fi.validation, "min length "+value)
	case "kubebuilder:validation:MaxLength":
		fi.validation = append(fi.validation, "max length "+value)
	case "kubebuilder:validation:MinItems":
		fi.validation = append(fi.validation, "min items "+value)
	case "kubebuilder:validation:MaxItems":
		fi.validation = append(fi.validation, "max items "+value)
	case "kubebuilder:validation:Minimum":
		fi.validation = append(fi.validation, "minimum "+value)
	case "kubebuilder:validation:Maximum":
		fi.validation = append(fi.validation, "maximum "+value)
	case "kubebuilder:validation:Pattern":
		fi.validation = append(fi.validation, "pattern "+codeSpan(unquoteMarkerValue(value)))
	case "kubebuilder:validation:Enum":
		vals := strings.Split(value, ";")
		for i, v := range vals {
			vals[i] = codeSpan(unquoteMarkerValue(v))
		}
		fi.validation = append(fi.validation, "one of "+strings.Join(vals, ", "))
	default:
		if strings.HasPrefix(m, "kubebuilder:validation:XValidation:") {
			msg, err := xvalidationMessage(m)
			if err != nil {
				return err
			}
			fi.validation = append(fi.validation, "rule: "+msg)
		}
	}
	return nil
}

// typeOf renders a field's type and returns the package's struct types it
// names, and the markers of a named non-struct type of the package.
func (w *walker) typeOf(owner *decl, e ast.Expr) (string, []*decl, []string, error) {
	switch t := e.(type) {
	case *ast.StarExpr:
		return w.typeOf(owner, t.X)
	case *ast.ArrayType:
		if id, ok := t.Elt.(*ast.Ident); ok && id.Name == "byte" {
			return "string (base64)", nil, nil, nil
		}
		s, uses, markers, err := w.typeOf(owner, t.Elt)
		return "list of " + s, uses, markers, err
	case *ast.MapType:
		k, _, _, err := w.typeOf(owner, t.Key)
		if err != nil {
			return "", nil, nil, err
		}
		v, uses, markers, err := w.typeOf(owner, t.Value)
		return "map of " + k + " to " + v, uses, markers, err
	case *ast.Ident:
		if b, ok := builtinTypes[t.Name]; ok {
			return b, nil, nil, nil
		}
		d := w.decls[t.Name]
		if d == nil {
			return "", nil, nil, fmt.Errorf("type %s is neither a basic type nor declared in the package", t.Name)
		}
		if _, ok := d.spec.Type.(*ast.StructType); ok {
			return "[" + t.Name + "](#" + anchor(t.Name) + ")", []*decl{d}, nil, nil
		}
		s, uses, markers, err := w.typeOf(d, d.spec.Type)
		_, own := splitComment(d.doc)
		return s, uses, append(markers, own...), err
	case *ast.SelectorExpr:
		pkgIdent, ok := t.X.(*ast.Ident)
		if !ok {
			return "", nil, nil, fmt.Errorf("unsupported type %s", exprString(e))
		}
		path := owner.imports[pkgIdent.Name]
		ext, ok := externalTypes[path+"."+t.Sel.Name]
		if !ok {
			return "", nil, nil, fmt.Errorf("type %s (%s) is not one hack/apidocs can describe: add it to externalTypes in hack/apidocs/parse.go", exprString(e), path)
		}
		if !w.externals[ext.name] {
			w.externals[ext.name] = true
			w.pkg.externals = append(w.pkg.externals, ext)
		}
		return "[" + ext.name + "](#" + anchor(ext.name) + ")", nil, nil, nil
	}
	return "", nil, nil, fmt.Errorf("unsupported type %s", exprString(e))
}

// constGroupOf collects the exported string constants of a const
// declaration, titled by the first words of a block's comment.
func constGroupOf(gd *ast.GenDecl) (constGroup, bool) {
	var g constGroup
	g.doc, _ = splitComment(gd.Doc)
	for _, s := range gd.Specs {
		vs := s.(*ast.ValueSpec)
		if len(vs.Names) != 1 || len(vs.Values) != 1 || !vs.Names[0].IsExported() {
			continue
		}
		lit, ok := vs.Values[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			continue
		}
		value, err := strconv.Unquote(lit.Value)
		if err != nil {
			continue
		}
		doc := vs.Doc
		if !gd.Lparen.IsValid() {
			// const X = "..." alone: its comment is the declaration's.
			doc = gd.Doc
		}
		text, _ := splitComment(doc)
		g.consts = append(g.consts, constInfo{name: vs.Names[0].Name, value: value, doc: constDoc(vs.Names[0].Name, value, text)})
	}
	if len(g.consts) == 0 {
		return g, false
	}
	g.title = "Other constants"
	if len(g.doc) > 0 && gd.Lparen.IsValid() {
		// The block comment's first words: "Condition reasons: a fixed
		// set..." is titled "Condition reasons".
		first := g.doc[0].text()
		if i := strings.IndexAny(first, ",:;."); i > 0 {
			first = first[:i]
		}
		g.title = first
	}
	return g, true
}

// constDoc drops the constant's Go name from the start of its comment:
// "ReasonNotFound: the repository..." reads "The repository...", and
// "AnnotationDigest is set on..." reads "Set on...". Other sentences
// that start with the name read with the value in its place.
func constDoc(name, value string, doc []paragraph) []paragraph {
	if len(doc) == 0 || doc[0].code {
		return doc
	}
	first := doc[0].text()
	rest, ok := "", false
	for _, prefix := range []string{name + ": ", name + " is "} {
		if rest, ok = strings.CutPrefix(first, prefix); ok && rest != "" {
			break
		}
	}
	switch {
	case ok && rest != "":
		if word, _, _ := strings.Cut(rest, " "); !strings.ContainsAny(word, "./") {
			// Not a field path such as spec.suspend, which keeps its case.
			rest = strings.ToUpper(rest[:1]) + rest[1:]
		}
		first = rest
	case strings.HasPrefix(first, name) && !isIdentRune(strings.TrimPrefix(first, name)):
		first = codeSpan(value) + strings.TrimPrefix(first, name)
	}
	out := append([]paragraph{{lines: []string{first}}}, doc[1:]...)
	return out
}

// isIdentRune reports whether s starts with a letter, digit or underscore.
func isIdentRune(s string) bool {
	if s == "" {
		return false
	}
	c := s[0]
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// paragraph is a paragraph of a doc comment, or a block of code lines
// (indented in the comment, as gofmt formats them).
type paragraph struct {
	lines []string
	code  bool
}

func (p paragraph) text() string { return strings.Join(p.lines, " ") }

// splitComment returns a comment's text as paragraphs and its marker
// lines (those starting with +, without the +).
func splitComment(cg *ast.CommentGroup) (paragraphs []paragraph, markers []string) {
	if cg == nil {
		return nil, nil
	}
	var cur paragraph
	flush := func() {
		if len(cur.lines) > 0 {
			paragraphs = append(paragraphs, cur)
		}
		cur = paragraph{}
	}
	for _, c := range cg.List {
		text, ok := strings.CutPrefix(c.Text, "//")
		if !ok {
			// A /* */ comment: its lines as they are.
			text = strings.TrimSuffix(strings.TrimPrefix(c.Text, "/*"), "*/")
		}
		for line := range strings.SplitSeq(text, "\n") {
			code := strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "  ")
			line = strings.TrimSpace(line)
			switch {
			case line == "":
				flush()
			case code:
				if !cur.code {
					flush()
					cur.code = true
				}
				cur.lines = append(cur.lines, line)
			case strings.HasPrefix(line, "+"):
				markers = append(markers, line[1:])
			default:
				if cur.code {
					flush()
				}
				cur.lines = append(cur.lines, line)
			}
		}
	}
	flush()
	return paragraphs, markers
}

// xvalidationMessage returns the message of an XValidation marker, which
// is what the API server answers when the rule fails.
func xvalidationMessage(m string) (string, error) {
	args, err := parseArgs(strings.TrimPrefix(m, "kubebuilder:validation:XValidation:"))
	if err != nil {
		return "", fmt.Errorf("%s: %w", m, err)
	}
	if args["message"] != "" {
		return args["message"], nil
	}
	if args["rule"] != "" {
		return "CEL rule " + codeSpan(args["rule"]), nil
	}
	return "", fmt.Errorf("%s: no rule or message", m)
}

// parseArgs parses the key=value,key=value arguments of a marker. Values
// are Go-quoted strings, back-quoted strings, or bare text up to the next
// comma.
func parseArgs(s string) (map[string]string, error) {
	args := map[string]string{}
	for s != "" {
		key, rest, ok := strings.Cut(s, "=")
		if !ok || key == "" {
			return nil, errors.New("want key=value arguments")
		}
		var value string
		switch {
		case strings.HasPrefix(rest, `"`):
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil, fmt.Errorf("argument %s: %w", key, err)
			}
			value, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		case strings.HasPrefix(rest, "`"):
			end := strings.IndexByte(rest[1:], '`')
			if end < 0 {
				return nil, fmt.Errorf("argument %s: unterminated `", key)
			}
			value, rest = rest[1:end+1], rest[end+2:]
		default:
			value, rest, _ = strings.Cut(rest, ",")
			rest = "," + rest
			if rest == "," {
				rest = ""
			}
		}
		args[key] = value
		if rest != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(rest, ","); !ok {
				return nil, fmt.Errorf("argument %s: want a comma after its value", key)
			}
		}
		s = rest
	}
	return args, nil
}

// unquoteMarkerValue strips the quotes of a marker's value: "5m" and `^a$`
// become 5m and ^a$; anything else stays as written.
func unquoteMarkerValue(v string) string {
	if len(v) >= 2 && v[0] == '`' && v[len(v)-1] == '`' {
		return v[1 : len(v)-1]
	}
	if u, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
		return u
	}
	return v
}

// reflectTag returns the value of key in a struct tag.
func reflectTag(tag, key string) string {
	for tag != "" {
		tag = strings.TrimLeft(tag, " ")
		name, rest, ok := strings.Cut(tag, ":")
		if !ok || rest == "" || rest[0] != '"' {
			return ""
		}
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return ""
		}
		if name == key {
			v, _ := strconv.Unquote(q)
			return v
		}
		tag = rest[len(q):]
	}
	return ""
}

func exprString(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.Ident:
		return t.Name
	case *ast.SelectorExpr:
		return exprString(t.X) + "." + t.Sel.Name
	case *ast.StarExpr:
		return "*" + exprString(t.X)
	case *ast.ArrayType:
		return "[]" + exprString(t.Elt)
	case *ast.MapType:
		return "map[" + exprString(t.Key) + "]" + exprString(t.Value)
	}
	return fmt.Sprintf("%T", e)
}
