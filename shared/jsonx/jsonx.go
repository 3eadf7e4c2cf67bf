// Package jsonx is the strict JSON decoder every Rampart handler uses.
//
// encoding/json is lenient in ways that matter at a trust boundary: it
// matches object keys to struct fields case-insensitively (so "Roles" fills
// a field tagged "roles"), lets the last of two duplicate keys win (so two
// parsers in a chain can disagree on a value), ignores unknown fields (mass
// assignment goes unnoticed), and stops reading after the first value. Each
// of those has been the root of a published vulnerability somewhere; Decode
// refuses all of them, plus over-deep nesting and invalid UTF-8, with a 400
// whose message names the problem.
package jsonx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/rampart-go/rampart/shared/problem"
)

// DefaultMaxDepth bounds object/array nesting. Real request bodies are a few
// levels deep; a deep one is an attack on the parser's stack or time.
const DefaultMaxDepth = 32

// Options tune DecodeWith.
type Options struct {
	// MaxDepth is the deepest nesting allowed (default DefaultMaxDepth).
	MaxDepth int
	// AllowUnknown accepts object keys that match no struct field. Only for
	// documents we do not own (a third party's webhook), never for input
	// that is mapped onto our own types.
	AllowUnknown bool
}

// Decode reads exactly one JSON value from r into v, strictly (see the
// package doc). It returns a *problem.Error: Invalid for anything wrong with
// the document, TooLarge when r stopped at an http.MaxBytesReader limit.
func Decode(r io.Reader, v any) error { return DecodeWith(r, v, Options{}) }

// DecodeWith is Decode with options.
func DecodeWith(r io.Reader, v any, o Options) error {
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	data, err := io.ReadAll(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return problem.Errorf(problem.TooLarge, "request body exceeds %d bytes", mbe.Limit)
		}
		return problem.Wrap(problem.Invalid, "could not read the request body", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return problem.New(problem.Invalid, "request body is empty; a JSON value is required")
	}
	if !utf8.Valid(data) {
		return problem.New(problem.Invalid, "request body is not valid UTF-8")
	}

	w := walker{dec: json.NewDecoder(bytes.NewReader(data)), opts: o}
	w.dec.UseNumber()
	var target reflect.Type
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() {
		target = rv.Type().Elem()
	} else {
		return problem.New(problem.Internal, "decode target must be a non-nil pointer")
	}
	if err := w.value(target, 0, ""); err != nil {
		return err
	}
	if _, err := w.dec.Token(); !errors.Is(err, io.EOF) {
		return problem.Errorf(problem.Invalid, "unexpected data after the JSON value at offset %d", w.dec.InputOffset())
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	if !o.AllowUnknown {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return translate(err)
	}
	return nil
}

// walker checks the token stream against the target type before any value
// is assigned, so a refused document never half-fills v.
type walker struct {
	dec  *json.Decoder
	opts Options
}

func (w *walker) value(t reflect.Type, depth int, path string) error {
	tok, err := w.dec.Token()
	if err != nil {
		return syntaxError(err, w.dec.InputOffset())
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar: its type is checked by the second pass
	}
	if depth+1 > w.opts.MaxDepth {
		return problem.Errorf(problem.Invalid, "JSON nesting deeper than %d levels", w.opts.MaxDepth)
	}
	switch d {
	case '{':
		return w.object(t, depth+1, path)
	case '[':
		return w.array(t, depth+1, path)
	}
	return problem.Errorf(problem.Invalid, "invalid JSON at offset %d", w.dec.InputOffset())
}

func (w *walker) object(t reflect.Type, depth int, path string) error {
	t = structural(t)
	var fields *fieldSet
	var elem reflect.Type
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields = fieldsOf(t)
		case reflect.Map:
			elem = t.Elem()
		}
	}
	seen := make(map[string]struct{})
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return syntaxError(err, w.dec.InputOffset())
		}
		key, ok := tok.(string)
		if !ok {
			return problem.Errorf(problem.Invalid, "invalid JSON at offset %d", w.dec.InputOffset())
		}
		if _, dup := seen[key]; dup {
			return problem.Errorf(problem.Invalid, "duplicate key %q", join(path, key))
		}
		seen[key] = struct{}{}
		next := elem
		if fields != nil {
			f, ok := fields.byName[key]
			switch {
			case ok:
				next = f
			case fields.folded(key) != "":
				return problem.Errorf(problem.Invalid, "field %q must be spelled %q", join(path, key), join(path, fields.folded(key)))
			case !w.opts.AllowUnknown:
				return problem.Errorf(problem.Invalid, "unknown field %q", join(path, key))
			}
		}
		if err := w.value(next, depth, join(path, key)); err != nil {
			return err
		}
	}
	if _, err := w.dec.Token(); err != nil { // the closing brace
		return syntaxError(err, w.dec.InputOffset())
	}
	return nil
}

func (w *walker) array(t reflect.Type, depth int, path string) error {
	t = structural(t)
	var elem reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		elem = t.Elem()
	}
	for i := 0; w.dec.More(); i++ {
		if err := w.value(elem, depth, fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	if _, err := w.dec.Token(); err != nil { // the closing bracket
		return syntaxError(err, w.dec.InputOffset())
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// structural returns the type whose shape the walker can check, or nil for
// types that decode themselves (json.Unmarshaler) or accept anything
// (interfaces): for those only duplicates and depth are checked.
func structural(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() == reflect.Interface {
		return nil
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	return t
}

// fieldSet is the JSON names a struct decodes, with their types.
type fieldSet struct {
	byName map[string]reflect.Type
	names  []string
}

// folded returns the field name that key matches only case-insensitively
// (the way encoding/json would accept it), or "".
func (f *fieldSet) folded(key string) string {
	for _, n := range f.names {
		if strings.EqualFold(n, key) {
			return n
		}
	}
	return ""
}

// fieldCache memoises fieldsOf per type: the reflection walk is the same for
// every request. It is a cache, not configuration.
var fieldCache sync.Map // reflect.Type -> *fieldSet

func fieldsOf(t reflect.Type) *fieldSet {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(*fieldSet)
	}
	fs := &fieldSet{byName: map[string]reflect.Type{}}
	collect(t, fs, 0)
	fieldCache.Store(t, fs)
	return fs
}

// collect follows encoding/json's rules closely enough for our types:
// exported fields, the json tag's name or the Go name, "-" skipped,
// untagged embedded structs promoted.
func collect(t reflect.Type, fs *fieldSet, depth int) {
	if depth > 8 {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			et := ft
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				collect(et, fs, depth+1)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := fs.byName[name]; !dup {
			fs.byName[name] = ft
			fs.names = append(fs.names, name)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func syntaxError(err error, offset int64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return problem.New(problem.Invalid, "unexpected end of JSON input")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		offset = se.Offset
	}
	return problem.Wrap(problem.Invalid, fmt.Sprintf("invalid JSON at offset %d", offset), err)
}

// translate turns the second pass's errors into client-safe messages.
func translate(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			return problem.Errorf(problem.Invalid, "the JSON value must be %s", kindName(te.Type))
		}
		return problem.Errorf(problem.Invalid, "field %q must be %s", field, kindName(te.Type))
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return problem.New(problem.Invalid, strings.TrimPrefix(msg, "json: "))
	}
	return problem.Wrap(problem.Invalid, "the JSON value does not fit the expected shape", err)
}

func kindName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "of another type"
}
