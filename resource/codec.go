package resource

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	yamlv2 "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"

	"github.com/meshtrace/meshtrace/parallel"
)

// KubeAPIVersion is the apiVersion of Kubernetes manifests.
const KubeAPIVersion = "kuma.io/v1alpha1"

// DefaultMesh is the mesh a Kubernetes manifest of a mesh-scoped type belongs
// to when it has no kuma.io/mesh label.
const DefaultMesh = "default"

// Universal envelope fields.
var universalMetaFields = []string{"type", "mesh", "name", "labels", "creationTime", "modificationTime"}

// Kubernetes ObjectMeta fields that are accepted, so `kubectl get -o yaml`
// output applies; all but name and labels are ignored.
var kubeMetadataFields = map[string]bool{
	"name": true, "namespace": true, "labels": true, "annotations": true,
	"creationTimestamp": true, "resourceVersion": true, "uid": true, "generation": true,
	"generateName": true, "selfLink": true, "deletionTimestamp": true,
	"deletionGracePeriodSeconds": true, "ownerReferences": true, "finalizers": true,
	"managedFields": true,
}

// DocumentError says which document of a multi-document input failed. It
// unwraps to the underlying error (usually an *InvalidError).
type DocumentError struct {
	// Index is the 0-based position of the document among all documents,
	// counting empty ones.
	Index int
	// Line is the 1-based line the document starts on.
	Line int
	Err  error
}

func (e *DocumentError) Error() string {
	return fmt.Sprintf("document %d (line %d): %v", e.Index, e.Line, e.Err)
}

func (e *DocumentError) Unwrap() error { return e.Err }

func invalid(field, msg string) error {
	return &InvalidError{Violations: ValidationErrors{{Field: field, Message: msg}}}
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// Decode reads one resource in Universal or Kubernetes form, JSON or YAML.
// Decoding is strict: unknown fields and wrong JSON types are reported with
// their full path. Every error is an *InvalidError.
func Decode(data []byte) (*Resource, error) {
	// JSON (every API body) is one document, never empty, that
	// splitDocuments would hand back alone: no slice of documents for it.
	if d := bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")); isJSONStream(d) {
		return decodeDocument(d)
	}
	return decodeSplitting(data)
}

// decodeSplitting is Decode through splitDocuments: the one resource of a
// stream of documents, empty ones skipped.
func decodeSplitting(data []byte) (*Resource, error) {
	var nonEmpty []document
	for _, d := range splitDocuments(data) {
		if !d.empty() {
			nonEmpty = append(nonEmpty, d)
		}
	}
	switch len(nonEmpty) {
	case 0:
		return nil, invalid("", "empty document")
	case 1:
		return decodeDocument(nonEmpty[0].data)
	default:
		return nil, invalid("", fmt.Sprintf("expected one document, got %d (use DecodeAll)", len(nonEmpty)))
	}
}

// DecodeAll reads every resource of a multi-document YAML stream ("---"
// separated, empty documents skipped) or of a single JSON document. A failure
// is a *DocumentError wrapping an *InvalidError.
func DecodeAll(data []byte) ([]*Resource, error) {
	var out []*Resource
	for _, doc := range DecodeDocuments(data) {
		if doc.Err != nil {
			return nil, doc.Err
		}
		out = append(out, doc.Resource)
	}
	return out, nil
}

// Document is one document of a multi-document input: its resource, or why
// it could not be decoded.
type Document struct {
	// Index is the 0-based position among all documents, counting empty ones.
	Index int
	// Line is the 1-based line the document starts on.
	Line     int
	Resource *Resource
	// Err is a *DocumentError (wrapping an *InvalidError) when decoding failed.
	Err error

	data  []byte
	first int
}

// FieldLine is the line, in the whole stream, of a field of this document
// (e.g. "spec.targetRef.kind" of a server-side violation); 0 when unknown.
func (d Document) FieldLine(field string) int {
	if field == "" {
		return 0
	}
	if l := FieldLine(d.data, field); l > 0 {
		return d.first + l - 1
	}
	return 0
}

// DecodeDocuments decodes every non-empty document of a stream like
// DecodeAll, but reports each document's failure instead of stopping at the
// first, so a caller can show them all.
func DecodeDocuments(data []byte) []Document {
	var out []Document
	for i, d := range splitDocuments(data) {
		if d.empty() {
			continue
		}
		out = append(out, Document{Index: i, Line: d.line, data: d.data, first: d.first})
	}
	// Documents decode independently: a long stream (a file of many
	// policies) is shared among the cores.
	parallel.For(len(out), parallelDecodeFrom, func(i int) {
		doc := &out[i]
		r, err := decodeDocument(doc.data)
		if err != nil {
			locate(err, doc.data, doc.first)
			doc.Err = &DocumentError{Index: doc.Index, Line: doc.Line, Err: err}
		}
		doc.Resource = r
	})
	return out
}

// parallelDecodeFrom is the number of documents from which DecodeDocuments
// decodes on every core.
const parallelDecodeFrom = 32

type document struct {
	data []byte
	line int // where the document starts: its "---" line, or 1
	// first is the stream line of data's first line.
	first int
}

func (d document) empty() bool {
	for data := d.data; len(data) > 0; {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if l := bytes.TrimSpace(line); len(l) > 0 && l[0] != '#' && string(l) != "..." {
			return false
		}
	}
	return true
}

// splitDocuments splits a YAML stream on "---" lines. JSON input is one document.
func splitDocuments(data []byte) []document {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if isJSONStream(data) {
		return []document{{data: data, line: 1, first: 1}}
	}
	var docs []document
	cur := document{line: 1, first: 1}
	line := 0
	for len(data) > 0 {
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i+1], data[i+1:]
		} else {
			l, data = data, nil
		}
		line++
		trimmed := bytes.TrimRight(l, " \t\r\n")
		if bytes.Equal(trimmed, []byte("---")) || bytes.HasPrefix(trimmed, []byte("--- ")) || bytes.HasPrefix(trimmed, []byte("---\t")) {
			if line > 1 || len(cur.data) > 0 {
				docs = append(docs, cur)
			}
			rest := bytes.TrimLeft(trimmed[3:], " \t")
			cur = document{line: line, first: line + 1}
			if len(rest) > 0 && rest[0] != '#' {
				cur.data = append(append([]byte{}, rest...), '\n')
				cur.first = line
			}
			continue
		}
		cur.data = append(cur.data, l...)
	}
	docs = append(docs, cur)
	return docs
}

// isJSONStream reports whether a stream (its byte order mark dropped) is
// JSON, which is one document.
func isJSONStream(data []byte) bool {
	t := bytes.TrimSpace(data)
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// parseTree turns one JSON or YAML document into a generic tree.
func parseTree(data []byte) (any, error) {
	t := bytes.TrimSpace(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
	if len(t) > 0 && t[0] == '{' {
		tree, err := parseJSONTree(t)
		if err != nil {
			return nil, invalid("", "invalid JSON: "+err.Error())
		}
		return tree, nil
	}
	if scanTree {
		if tree, ok := blockYAMLTree(data); ok {
			return tree, nil
		}
		var y any
		if err := yamlv2.UnmarshalStrict(data, &y); err != nil {
			// What sigs.k8s.io/yaml says: it is the same call.
			return nil, invalid("", "invalid YAML: "+err.Error())
		}
		if tree, ok := yamlTree(y); ok {
			return tree, nil
		}
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, invalid("", "invalid YAML: "+err.Error())
	}
	tree, err := parseJSONTree(js)
	if err != nil {
		return nil, invalid("", "invalid YAML: "+err.Error())
	}
	return tree, nil
}

func decodeDocument(data []byte) (*Resource, error) {
	if t := bytes.TrimSpace(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))); len(t) > 0 && t[0] == '{' {
		if r, ok := decodeDirect(t); ok {
			return r, nil
		}
	}
	tree, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		return nil, invalid("", "a resource must be an object, got "+jsonKind(tree))
	}
	_, hasAPIVersion := obj["apiVersion"]
	_, hasKind := obj["kind"]
	if hasAPIVersion || hasKind {
		return decodeKube(obj)
	}
	return decodeUniversal(obj)
}

// lookupType reads the type name at field and finds its descriptor.
func lookupType(obj map[string]any, field string, kube bool) (*Descriptor, error) {
	raw, ok := obj[field]
	if !ok || raw == nil {
		return nil, invalid(field, "must be defined")
	}
	s, ok := raw.(string)
	if !ok {
		return nil, invalid(field, "must be a string, got "+jsonKind(raw))
	}
	if s == "" {
		return nil, invalid(field, "must be defined")
	}
	if kube {
		for _, d := range Types() {
			if d.KubeKind == s {
				return d, nil
			}
		}
	} else if d, ok := Lookup(Type(s)); ok {
		return d, nil
	}
	return nil, invalid(field, fmt.Sprintf("unknown %s %q", field, s))
}

func decodeUniversal(obj map[string]any) (*Resource, error) {
	d, err := lookupType(obj, "type", false)
	if err != nil {
		return nil, err
	}
	if r, ok := decodeUniversalFast(d, obj); ok {
		return r, nil
	}
	r := &Resource{Meta: Meta{Type: d.Type}, Spec: d.NewSpec()}
	var errs ValidationErrors
	meta := map[string]any{}
	specTree := map[string]any{}
	for _, k := range sortedKeys(obj) {
		switch {
		case slices.Contains(universalMetaFields, k):
			meta[k] = obj[k]
		case d.IsPolicy && k == "spec":
			// handled below
		case d.IsPolicy:
			errs.Add(k, "unknown field")
		default:
			specTree[k] = obj[k]
		}
	}
	decodeStrict("", meta, &r.Meta, &errs)
	if d.IsPolicy {
		decodeStrict("spec", obj["spec"], r.Spec, &errs)
	} else {
		decodeStrict("", specTree, r.Spec, &errs)
	}
	if len(errs) > 0 {
		return nil, errs.Err()
	}
	if len(r.Labels) == 0 {
		r.Labels = nil
	}
	return r, nil
}

var metaFields, _ = structFields(reflect.TypeFor[Meta]())

// decodeUniversalFast is decodeUniversal for a document that fits (see
// fastFill): the envelope and the spec are filled straight from the tree,
// without sorting keys or copying them into maps. ok is false when anything
// is unusual or wrong; decodeUniversal then says what.
func decodeUniversalFast(d *Descriptor, obj map[string]any) (*Resource, bool) {
	if !fastFillOn {
		return nil, false
	}
	r := &Resource{Meta: Meta{Type: d.Type}, Spec: d.NewSpec()}
	meta := reflect.ValueOf(&r.Meta).Elem()
	var inline map[string]any
	for k, v := range obj {
		if i, ok := metaFields[k]; ok && slices.Contains(universalMetaFields, k) {
			if !fastFill(v, meta.Field(i)) {
				return nil, false
			}
			continue
		}
		switch {
		case d.IsPolicy && k == "spec":
		case d.IsPolicy:
			return nil, false
		default:
			if inline == nil {
				inline = make(map[string]any, len(obj))
			}
			inline[k] = v
		}
	}
	spec := obj["spec"]
	if !d.IsPolicy {
		spec = inline
	}
	if spec != nil && !fastFill(spec, reflect.ValueOf(r.Spec).Elem()) {
		return nil, false
	}
	if len(r.Labels) == 0 {
		r.Labels = nil
	}
	return r, true
}

type kubeMetadata struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

func decodeKube(obj map[string]any) (*Resource, error) {
	var errs ValidationErrors
	switch v := obj["apiVersion"].(type) {
	case string:
		if v != KubeAPIVersion {
			errs.Add("apiVersion", fmt.Sprintf("must be %s", KubeAPIVersion))
		}
	case nil:
		errs.Add("apiVersion", "must be defined")
	default:
		errs.Add("apiVersion", "must be a string, got "+jsonKind(v))
	}
	d, err := lookupType(obj, "kind", true)
	if err != nil {
		var ie *InvalidError
		errors.As(err, &ie)
		errs = append(errs, ie.Violations...)
		return nil, errs.Err()
	}
	r := &Resource{Meta: Meta{Type: d.Type}, Spec: d.NewSpec()}
	for _, k := range sortedKeys(obj) {
		switch k {
		case "apiVersion", "kind", "metadata", "spec":
		default:
			errs.Add(k, "unknown field")
		}
	}
	var md kubeMetadata
	switch m := obj["metadata"].(type) {
	case map[string]any:
		known := map[string]any{}
		for _, k := range sortedKeys(m) {
			if !kubeMetadataFields[k] {
				errs.Add(joinField("metadata", k), "unknown field")
				continue
			}
			if k == "name" || k == "namespace" || k == "labels" {
				known[k] = m[k]
			}
		}
		decodeStrict("metadata", known, &md, &errs)
	case nil:
		errs.Add("metadata", "must be defined")
	default:
		errs.Add("metadata", "must be an object, got "+jsonKind(m))
	}
	decodeStrict("spec", obj["spec"], r.Spec, &errs)
	if len(errs) > 0 {
		return nil, errs.Err()
	}
	r.Name = md.Name
	if d.Scope == ScopeMesh {
		r.Mesh = DefaultMesh
		if m, ok := md.Labels[LabelMesh]; ok {
			r.Mesh = m
		}
	}
	delete(md.Labels, LabelMesh)
	if len(md.Labels) > 0 {
		r.Labels = md.Labels
	}
	return r, nil
}

// UnmarshalJSON reads the Universal JSON form strictly, like Decode.
func (r *Resource) UnmarshalJSON(data []byte) error {
	if got, ok := decodeDirect(data); ok {
		version := r.Version
		*r = *got
		r.Version = version
		return nil
	}
	tree, err := parseJSONTree(data)
	if err != nil {
		return invalid("", "invalid JSON: "+err.Error())
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		return invalid("", "a resource must be an object, got "+jsonKind(tree))
	}
	got, err := decodeUniversal(obj)
	if err != nil {
		return err
	}
	version := r.Version
	*r = *got
	r.Version = version
	return nil
}

// MarshalJSON writes the Universal form: the envelope, then `spec` for
// policies or the spec's fields inline for other types.
func (r Resource) MarshalJSON() ([]byte, error) {
	specJSON, err := MarshalSpec(&r)
	if err != nil {
		return nil, err
	}
	return MarshalJSONWithSpec(&r, specJSON)
}

// MarshalSpec is json.Marshal of r's spec (of the zero spec when it has
// none): the part of MarshalJSON that costs. A writer that needs the spec's
// JSON more than once (global checks a resource's size, then stores it)
// encodes it once with this and passes it to MarshalJSONWithSpec.
func MarshalSpec(r *Resource) ([]byte, error) {
	d, ok := Lookup(r.Type)
	if !ok {
		return nil, fmt.Errorf("unknown resource type %q", r.Type)
	}
	spec := r.Spec
	if spec == nil {
		spec = d.NewSpec()
	}
	if mt, ok := spec.(*MeshTraceSpec); ok && mt != nil {
		return appendMeshTraceJSON(make([]byte, 0, 256), mt), nil
	}
	return json.Marshal(spec)
}

// MarshalJSONWithSpec is MarshalJSON given specJSON, what MarshalSpec(r)
// returns for r as it is now.
func MarshalJSONWithSpec(r *Resource, specJSON []byte) ([]byte, error) {
	d, ok := Lookup(r.Type)
	if !ok {
		return nil, fmt.Errorf("unknown resource type %q", r.Type)
	}
	b := make([]byte, 0, len(specJSON)+128+len(r.Name)+len(r.Mesh))
	b = append(b, `{"type":`...)
	b = AppendJSONString(b, string(r.Type))
	if r.Mesh != "" {
		b = append(b, `,"mesh":`...)
		b = AppendJSONString(b, r.Mesh)
	}
	b = append(b, `,"name":`...)
	b = AppendJSONString(b, r.Name)
	// A time's RFC 3339 text (digits and -:.TZ+) needs no JSON escape: it
	// is appended in place, not formatted to a string and scanned.
	if !r.CreationTime.IsZero() {
		b = append(b, `,"creationTime":"`...)
		b = append(r.CreationTime.AppendFormat(b, time.RFC3339Nano), '"')
	}
	if !r.ModificationTime.IsZero() {
		b = append(b, `,"modificationTime":"`...)
		b = append(r.ModificationTime.AppendFormat(b, time.RFC3339Nano), '"')
	}
	if len(r.Labels) > 0 {
		b = append(b, `,"labels":{`...)
		for i, k := range sortedKeys(r.Labels) {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendJSONString(b, k)
			b = append(b, ':')
			b = AppendJSONString(b, r.Labels[k])
		}
		b = append(b, '}')
	}
	if d.IsPolicy {
		b = append(b, `,"spec":`...)
		b = append(b, specJSON...)
	} else if inner := bytes.TrimSpace(specJSON); len(inner) > 2 && inner[0] == '{' {
		b = append(b, ',')
		b = append(b, inner[1:len(inner)-1]...)
	}
	b = append(b, '}')
	return b, nil
}

// AppendJSONString appends s as json.Marshal writes a string (HTML's <, >
// and & escaped, invalid UTF-8 replaced): the common case (printable ASCII
// that needs no escape) directly, anything else through encoding/json.
func AppendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// MarshalYAML writes the Universal form as YAML.
func MarshalYAML(r *Resource) ([]byte, error) {
	js, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return jsonToOrderedYAML(js)
}

// ToKubernetes writes r as a Kubernetes manifest. namespace may be empty; the
// mesh of a mesh-scoped resource goes into the kuma.io/mesh label.
func ToKubernetes(r *Resource, namespace string) ([]byte, error) {
	d, ok := Lookup(r.Type)
	if !ok {
		return nil, fmt.Errorf("unknown resource type %q", r.Type)
	}
	spec := r.Spec
	if spec == nil {
		spec = d.NewSpec()
	}
	labels := map[string]string{}
	maps.Copy(labels, r.Labels)
	if d.Scope == ScopeMesh {
		labels[LabelMesh] = r.Mesh
	}
	manifest := struct {
		APIVersion string       `json:"apiVersion"`
		Kind       string       `json:"kind"`
		Metadata   kubeMetadata `json:"metadata"`
		Spec       Spec         `json:"spec"`
	}{
		APIVersion: KubeAPIVersion,
		Kind:       d.KubeKind,
		Metadata:   kubeMetadata{Name: r.Name, Namespace: namespace, Labels: labels},
		Spec:       spec,
	}
	if len(labels) == 0 {
		manifest.Metadata.Labels = nil
	}
	js, err := json.Marshal(manifest)
	if err != nil {
		return nil, err
	}
	return jsonToOrderedYAML(js)
}

// Hash is a stable content hash of r: the sha256 of the canonical JSON of its
// type, mesh, name, labels and spec. Times and the store version are left out,
// so global's and a zone's copies of the same content hash equal.
func Hash(r *Resource) string {
	var spec any
	if r.Spec != nil {
		raw, err := json.Marshal(r.Spec)
		if err != nil {
			return "error:" + err.Error()
		}
		if spec, err = parseJSONTree(raw); err != nil {
			return "error:" + err.Error()
		}
	}
	labels := r.Labels
	if len(labels) == 0 {
		labels = nil
	}
	canon, err := json.Marshal(struct {
		Type   Type              `json:"type"`
		Mesh   string            `json:"mesh"`
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
		Spec   any               `json:"spec"`
	}{r.Type, r.Mesh, r.Name, labels, spec})
	if err != nil {
		return "error:" + err.Error()
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:])
}

// Effective returns a copy of r with the defaults of its spec filled in:
// the form validation, matching and Envoy generation work on. r itself (the
// spec as applied, which is what is stored and returned) is not changed.
func Effective(r *Resource) *Resource {
	if r == nil {
		return nil
	}
	cp := *r
	cp.Labels = maps.Clone(r.Labels)
	if d, ok := Lookup(r.Type); ok {
		cp.Spec = copySpec(d, r.Spec)
	}
	Prepare(&cp)
	return &cp
}

// effectiveSpec is Effective(r).Spec for r of a known type d, without
// copying the rest of r (Validate needs only the spec).
func effectiveSpec(d *Descriptor, spec Spec) Spec {
	cp := copySpec(d, spec) // never nil, so Prepare would not replace it
	cp.SetDefaults()
	return cp
}

// copySpec is a deep copy of spec as a JSON round trip into a new spec of
// d's type makes it.
func copySpec(d *Descriptor, spec Spec) Spec {
	if c, ok := spec.(specCloner); ok && cloneSpecs {
		if cp, ok := c.cloneSpec(); ok && reflect.TypeOf(cp) == d.specType {
			return cp
		}
	}
	out := d.NewSpec()
	if spec != nil {
		if b, err := json.Marshal(spec); err == nil {
			_ = json.Unmarshal(b, out)
		}
	}
	return out
}

// Prepare fills in the defaults of r's spec in place.
func Prepare(r *Resource) {
	if r == nil {
		return
	}
	if r.Spec == nil {
		if d, ok := Lookup(r.Type); ok {
			r.Spec = d.NewSpec()
		} else {
			return
		}
	}
	r.Spec.SetDefaults()
}
