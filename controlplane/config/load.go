package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrInvalid is wrapped by every error Load reports about a file's content.
var ErrInvalid = errors.New("invalid configuration")

// Error is one problem in a configuration file.
type Error struct {
	File string
	Line int // 0 when the field is absent from the file
	// Field is the dotted path of the field, e.g. coordinator.replicate[0].target.kind.
	Field  string
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

func (e *Error) Unwrap() error { return ErrInvalid }

// Errors are every problem found in a file, in the order of their lines.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Load reads and validates the configuration file at path. In values,
// ${NAME} is replaced by the environment variable NAME first. An
// unreadable file is an error wrapping the os error; a file with problems
// gives Errors, each naming its line, field and why.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return Parse(path, data)
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Parse validates a configuration's content; name is the file's, for errors.
func Parse(name string, data []byte) (*File, error) {
	p := &parser{file: name, paths: map[string]int{}}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		p.add(lineIn(err.Error()), "", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, p.errs
	}
	var f File
	if len(root.Content) > 0 {
		p.expand(root.Content[0])
		p.walk(root.Content[0], reflect.TypeOf(f), "")
		if err := root.Content[0].Decode(&f); err != nil {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				p.add(lineIn(err.Error()), "", err.Error())
			} else {
				for _, msg := range te.Errors {
					line := lineIn(msg)
					p.add(line, p.fieldAt(line), typeMessage(msg))
				}
			}
		}
	}
	if len(p.errs) > 0 {
		return nil, p.sorted()
	}
	f = f.withDefaults()
	p.validate(&f)
	if len(p.errs) > 0 {
		return nil, p.sorted()
	}
	return &f, nil
}

// expand replaces ${NAME} in every scalar value (not in comments) by the
// environment variable NAME.
func (p *parser) expand(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode {
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			v, ok := os.LookupEnv(envRef.FindStringSubmatch(m)[1])
			if !ok {
				p.add(n.Line, "", m+" is not set in the environment")
			}
			return v
		})
	}
	for _, c := range n.Content {
		p.expand(c)
	}
}

type parser struct {
	file  string
	paths map[string]int // field path → line
	errs  Errors
}

func (p *parser) add(line int, field, reason string) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Field: field, Reason: reason})
}

// at reports a problem with the field at path, on its line, or on its
// nearest parent's when the field is absent from the file.
func (p *parser) at(path, format string, args ...any) {
	line := 0
	for q := path; q != ""; {
		if l, ok := p.paths[q]; ok {
			line = l
			break
		}
		i := strings.LastIndexAny(q, ".[")
		if i < 0 {
			break
		}
		q = q[:i]
	}
	p.add(line, path, fmt.Sprintf(format, args...))
}

func (p *parser) sorted() Errors {
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	return p.errs
}

// fieldAt is the path of the field on a line, for the decoder's type errors.
func (p *parser) fieldAt(line int) string {
	best := ""
	for path, l := range p.paths {
		if l == line && len(path) > len(best) {
			best = path
		}
	}
	return best
}

// walk records each field's line and reports keys that t does not have.
func (p *parser) walk(n *yaml.Node, t reflect.Type, path string) {
	if path != "" {
		if _, seen := p.paths[path]; !seen {
			p.paths[path] = n.Line
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			sub := join(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				p.add(k.Line, sub, "unknown field; known: "+strings.Join(sortedNames(fields), ", "))
				continue
			}
			p.paths[sub] = k.Line
			p.walk(v, ft, sub)
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, c := range n.Content {
			p.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields are a struct's fields by yaml key, inline fields included.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name != "" && name != "-" {
			out[name] = f.Type
		}
	}
	return out
}

func sortedNames(m map[string]reflect.Type) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

var lineRef = regexp.MustCompile(`line (\d+)`)

// lineIn is the line number a YAML error message names, or 0.
func lineIn(msg string) int {
	if m := lineRef.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

var typeRef = regexp.MustCompile("^line \\d+: cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")

// typeMessage rewrites the decoder's "cannot unmarshal !!str `x` into
// time.Duration" in the file's terms.
func typeMessage(msg string) string {
	m := typeRef.FindStringSubmatch(msg)
	if m == nil {
		return lineRef.ReplaceAllString(msg, "")
	}
	want := map[string]string{
		"time.Duration": "a duration such as 2s or 1m30s", "int": "a whole number", "float64": "a number",
		"bool": "true or false", "string": "a string",
	}[m[3]]
	if want == "" {
		switch {
		case strings.HasPrefix(m[3], "[]"):
			want = "a list"
		case strings.HasPrefix(m[3], "map["):
			want = "a mapping"
		default:
			want = "a mapping of its fields"
		}
	}
	return fmt.Sprintf("%q is not %s", m[2], want)
}
