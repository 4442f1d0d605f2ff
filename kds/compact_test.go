package kds

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

// compactSeeds are global's encodings of the seed documents' policies, and
// of policies whose names, labels and times it writes with escapes.
func compactSeeds(t testing.TB) [][]byte {
	var out [][]byte
	rs := seedResources(t)
	odd := meshTraceOf("default", "a<b>&c", 1)
	odd.Labels = map[string]string{"caf\u00e9": "x"}
	odd.CreationTime = time.Date(2026, 11, 30, 4, 48, 57, 1, time.FixedZone("x", 3600))
	rs = append(rs, odd)
	for _, r := range rs {
		b, err := encodeResource(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// Global's encoding of every seed policy is read the compact way, equal to
// what decodeEncoded reads; escapes and other types are left to it.
func TestDecodeCompactReadsGlobalsEncoding(t *testing.T) {
	read := 0
	for _, b := range compactSeeds(t) {
		fast, _, ok := decodeCompact(b)
		slow, err := decodeEncoded(b)
		if !ok {
			if err == nil && !bytes.Contains(b, []byte(`\u`)) {
				t.Fatalf("declined a policy global wrote without escapes:\n%s", b)
			}
			continue
		}
		read++
		if err != nil {
			t.Fatalf("decodeEncoded refuses what the compact way took: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("decoded differently\ncompact: %+v\nencoded: %+v\n%s", fast, slow, b)
		}
	}
	if read < 5 {
		t.Fatalf("only %d policies read the compact way", read)
	}
}

// What is outside the compact form is declined, never read otherwise than
// encoding/json would.
func TestDecodeCompactDeclines(t *testing.T) {
	good := `{"type":"MeshTrace","mesh":"default","name":"p","labels":{"a":"b"},"spec":{"targetRef":{"kind":"Mesh"},"default":{"sampling":{"overall":10},"backends":[{"zipkin":{"url":"http://z:9411/api/v2/spans","traceId128bit":false}}]}}}`
	if _, _, ok := decodeCompact([]byte(good)); !ok {
		t.Fatalf("declined %s", good)
	}
	cases := map[string]string{
		"whitespace":         strings.Replace(good, `"mesh":"default"`, `"mesh": "default"`, 1),
		"trailing space":     good + " ",
		"data after":         good + "{}",
		"key case":           strings.Replace(good, `"targetRef"`, `"TargetRef"`, 1),
		"repeated key":       strings.Replace(good, `"name":"p"`, `"name":"p","name":"q"`, 1),
		"repeated spec key":  strings.Replace(good, `{"kind":"Mesh"}`, `{"kind":"Mesh","kind":"Mesh"}`, 1),
		"repeated type":      strings.Replace(good, `"name":"p"`, `"name":"p","type":"MeshTrace"`, 1),
		"escape":             strings.Replace(good, `"name":"p"`, `"name":"p\u0041"`, 1),
		"non-ASCII":          strings.Replace(good, `"name":"p"`, "\"name\":\"p\u00e9\"", 1),
		"null":               strings.Replace(good, `"sampling":{"overall":10}`, `"sampling":null`, 1),
		"null spec":          `{"type":"MeshTrace","mesh":"default","name":"p","spec":null}`,
		"no spec":            `{"type":"MeshTrace","mesh":"default","name":"p"}`,
		"fraction":           strings.Replace(good, `"overall":10`, `"overall":10.5`, 1),
		"exponent":           strings.Replace(good, `"overall":10`, `"overall":1e1`, 1),
		"leading zero":       strings.Replace(good, `"overall":10`, `"overall":010`, 1),
		"unknown field":      strings.Replace(good, `"traceId128bit":false`, `"traceId128bit":false,"x":1`, 1),
		"unknown envelope":   strings.Replace(good, `"name":"p"`, `"name":"p","owner":"x"`, 1),
		"wrong type":         strings.Replace(good, `"traceId128bit":false`, `"traceId128bit":"no"`, 1),
		"not a policy":       `{"type":"Mesh","name":"default"}`,
		"unknown type":       `{"type":"Nope","name":"x","spec":{}}`,
		"truncated":          good[:len(good)-1],
		"not the type first": `{"name":"p","type":"MeshTrace","mesh":"default","spec":{}}`,
	}
	for name, doc := range cases {
		if r, _, ok := decodeCompact([]byte(doc)); ok {
			t.Errorf("%s: took %s as %+v", name, doc, r)
		}
		sameAsReflective(t, []byte(doc))
	}
}

// What the compact way reads but json.Marshal would write otherwise gets no
// spec JSON (the store encodes such a spec itself).
func TestDecodeCompactSpecJSONOnlyAsMarshalled(t *testing.T) {
	good := `{"type":"MeshTrace","mesh":"default","name":"p","labels":{"a":"b"},"spec":{"targetRef":{"kind":"MeshService","name":"s","tags":{"a":"1","b":"2"}},"default":{"tags":[],"sampling":{"overall":10,"client":"50.5"},"backends":[{"zipkin":{"url":"http://z:9411/api/v2/spans","traceId128bit":false}}]}}}`
	if _, spec, ok := decodeCompact([]byte(good)); !ok || spec == nil {
		t.Fatalf("no spec JSON (read %v) for %s", ok, good)
	}
	cases := map[string]string{
		"fields out of order":      strings.Replace(good, `"kind":"MeshService","name":"s"`, `"name":"s","kind":"MeshService"`, 1),
		"spec fields out of order": `{"type":"MeshTrace","name":"p","spec":{"default":{},"targetRef":{"kind":"Mesh"}}}`,
		"field left out":           strings.Replace(good, `,"traceId128bit":false`, ``, 1),
		"empty omitempty string":   strings.Replace(good, `"name":"s"`, `"name":"s","mesh":""`, 1),
		"empty omitempty list":     strings.Replace(good, `"tags":{"a":"1","b":"2"}`, `"tags":{"a":"1","b":"2"},"proxyTypes":[]`, 1),
		"empty omitempty map":      strings.Replace(good, `"tags":{"a":"1","b":"2"}`, `"tags":{}`, 1),
		"keys not sorted":          strings.Replace(good, `"tags":{"a":"1","b":"2"}`, `"tags":{"b":"2","a":"1"}`, 1),
		"minus zero":               strings.Replace(good, `"overall":10`, `"overall":-0`, 1),
		"html character":           strings.Replace(good, `"name":"s"`, `"name":"s<t"`, 1),
		"ampersand":                strings.Replace(good, `spans"`, `spans?a=1&b=2"`, 1),
		"empty targetRef":          strings.Replace(good, `{"kind":"MeshService","name":"s","tags":{"a":"1","b":"2"}}`, `{}`, 1),
		"empty zipkin":             strings.Replace(good, `{"url":"http://z:9411/api/v2/spans","traceId128bit":false}`, `{}`, 1),
	}
	for name, doc := range cases {
		sameAsReflective(t, []byte(doc))
		r, spec, ok := decodeCompact([]byte(doc))
		if !ok {
			t.Errorf("%s: not read: %s", name, doc)
			continue
		}
		if spec != nil {
			want, _ := json.Marshal(r.Spec)
			t.Errorf("%s: spec JSON %s, json.Marshal writes %s", name, spec, want)
		}
	}
}

// compactFuzzSeeds are policies in the compact form with every field of
// MeshTrace set, and empty lists and maps.
var compactFuzzSeeds = []string{
	`{"type":"MeshTrace","mesh":"m","name":"n","labels":{},"spec":{"targetRef":{"kind":"MeshService","name":"s","tags":{},"proxyTypes":[]},"default":{"tags":[],"backends":[]}}}`,
	`{"type":"MeshTrace","name":"n","spec":{"default":{"sampling":{"overall":"12.5","client":-1,"random":0}}}}`,
	`{"type":"MeshTrace","mesh":"m","name":"n","spec":{"targetRef":{"kind":"MeshService","name":"s","tags":{"a":"1","b":"2"},"proxyTypes":["Sidecar"]},"default":{"tags":[{"name":"t","literal":"l"},{"name":"h","header":{"name":"x","default":"d"}}],"sampling":{"overall":10,"client":"50.5"},"backends":[{"type":"Zipkin","zipkin":{"url":"u","traceId128bit":true,"apiVersion":"httpJson","sharedSpanContext":false}},{"datadog":{"url":"d","splitService":false}},{"openTelemetry":{"endpoint":"e"}}]}}}`,
	`{"type":"MeshTrace","mesh":"m","name":"n","labels":{"b":"1","a":"2"},"creationTime":"2026-11-30T04:48:57.123456789Z","modificationTime":"2026-11-30T05:48:57+01:00","spec":{"default":{"tags":[{"name":"","header":{"name":"x"}},{"literal":"l","name":"t"}],"backends":[{"zipkin":{},"type":""},{"datadog":{"splitService":true}},{"openTelemetry":{}}]},"targetRef":{"kind":"Mesh","proxyTypes":["Gateway","Sidecar"],"mesh":"","name":"a<b"}}}`,
}

// FuzzDecodeCompactMatchesEncoded: whatever the compact way takes,
// decodeEncoded (what zones decoded with before) takes too and reads equal,
// and the spec JSON it returns, if any, is what json.Marshal writes for the
// spec read (what the zone's store writes with it is then unchanged).
func FuzzDecodeCompactMatchesEncoded(f *testing.F) {
	for _, b := range compactSeeds(f) {
		f.Add(b)
	}
	for _, s := range compactFuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, spec, ok := decodeCompact(data)
		if !ok {
			return
		}
		if spec != nil {
			want, err := json.Marshal(fast.Spec)
			if err != nil || !bytes.Equal(spec, want) {
				t.Fatalf("spec JSON %s, json.Marshal writes %s (%v)\n%s", spec, want, err, data)
			}
		}
		slow, err := decodeEncoded(data)
		if err != nil {
			t.Fatalf("decodeEncoded refuses what the compact way took: %v\n%s", err, data)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("decoded differently\ncompact: %+v\nencoded: %+v\n%s", fast, slow, data)
		}
	})
}

// Random MeshTraces as global encodes them (every optional field set or
// not, empty and full lists and maps, sampling as integers and strings,
// names that need escapes or not): the compact way reads what decodeEncoded
// reads, and declines only encodings with escapes or non-ASCII.
func TestDecodeCompactRandomPolicies(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 3))
	t.Logf("seed %d", seed)
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	str := func() string {
		if rng.IntN(40) == 0 {
			return pick("x<y", "caf\u00e9", "q\"q")
		}
		return pick("", "a", "svc-1", "http://z:9411/api/v2/spans")
	}
	maybe := func() bool { return rng.IntN(2) == 0 }
	strMap := func() map[string]string {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return map[string]string{}
		}
		return map[string]string{str(): str(), "kuma.io/zone": str()}
	}
	ios := func() *resource.IntOrString {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return resource.Str(pick("12.5", "0", "100", str()))
		}
		return resource.Int(rng.Int64N(300) - 100)
	}
	strPtr := func() *string {
		if maybe() {
			return nil
		}
		s := str()
		return &s
	}
	read := 0
	for range 5000 {
		s := &resource.MeshTraceSpec{}
		if maybe() {
			s.TargetRef = &resource.TargetRef{Kind: pick("Mesh", "MeshService", "MeshSubset"), Name: str(), Mesh: str(), Tags: strMap()}
			if maybe() {
				s.TargetRef.ProxyTypes = []string{}
				if maybe() {
					s.TargetRef.ProxyTypes = append(s.TargetRef.ProxyTypes, "Sidecar", str())
				}
			}
		}
		if rng.IntN(5) > 0 {
			c := &resource.MeshTraceConf{}
			if maybe() {
				tags := []resource.TraceTag{}
				for range rng.IntN(3) {
					tag := resource.TraceTag{Name: str(), Literal: strPtr()}
					if maybe() {
						tag.Header = &resource.HeaderTag{Name: str(), Default: strPtr()}
					}
					tags = append(tags, tag)
				}
				c.Tags = &tags
			}
			if maybe() {
				c.Sampling = &resource.Sampling{Overall: ios(), Client: ios(), Random: ios()}
			}
			if maybe() {
				bs := []resource.Backend{}
				for range rng.IntN(3) {
					var b resource.Backend
					switch rng.IntN(4) {
					case 0:
						shared := maybe()
						b.Zipkin = &resource.ZipkinBackend{URL: str(), TraceID128Bit: maybe(), APIVersion: pick("", "httpJson")}
						if maybe() {
							b.Zipkin.SharedSpanContext = &shared
						}
					case 1:
						b.Datadog = &resource.DatadogBackend{URL: str(), SplitService: maybe()}
					case 2:
						b.OpenTelemetry = &resource.OpenTelemetryBackend{Endpoint: str()}
					}
					if maybe() {
						b.Type = pick("Zipkin", "Datadog", str())
					}
					bs = append(bs, b)
				}
				c.Backends = &bs
			}
			s.Default = c
		}
		r := &resource.Resource{Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: str(), Name: str(), Labels: strMap()}, Spec: s}
		if maybe() {
			r.CreationTime = time.Date(2026, 11, 30, 5, 0, rng.IntN(60), rng.IntN(1e9), time.FixedZone("x", 3600*rng.IntN(3)))
			r.ModificationTime = r.CreationTime.Add(time.Duration(rng.IntN(1e9)))
		}
		b, err := encodeResource(r)
		if err != nil {
			t.Fatal(err)
		}
		sameAsReflective(t, b)
		slow, err := decodeEncoded(b)
		fast, spec, ok := decodeCompact(b)
		if !ok {
			if err == nil && !bytes.Contains(b, []byte(`\`)) && !bytes.ContainsFunc(b, func(r rune) bool { return r >= 0x7f }) {
				t.Fatalf("declined what global wrote without escapes:\n%s", b)
			}
			continue
		}
		read++
		if err != nil {
			t.Fatalf("decodeEncoded refuses what the compact way took: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("decoded differently\ncompact: %+v\nencoded: %+v\n%s", fast, slow, b)
		}
		// Global wrote the spec with json.Marshal: read as it is, the
		// zone's store keeps those bytes.
		if want, _ := json.Marshal(s); !bytes.Equal(spec, want) {
			t.Fatalf("spec JSON %s, global wrote %s", spec, want)
		}
	}
	if read < 1000 {
		t.Fatalf("only %d of 5000 read the compact way", read)
	}
	t.Logf("%d of 5000 read the compact way", read)
}
