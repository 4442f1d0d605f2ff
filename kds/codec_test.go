package kds

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// seedResources are the resource package's example documents, with times
// and labels as a stored copy has them.
func seedResources(t testing.TB) []*resource.Resource {
	files, err := filepath.Glob(filepath.Join("..", "resource", "testdata", "seed", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no seed documents: %v", err)
	}
	var out []*resource.Resource
	for i, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := resource.DecodeAll(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, r := range rs {
			if i%2 == 0 {
				r.CreationTime = time.Date(2026, 11, 30, 4, 48, 57, 123456789, time.UTC)
				r.ModificationTime = r.CreationTime.Add(time.Duration(i) * time.Second)
				r.Labels = withLabels(r.Labels, map[string]string{"team": "core", resource.LabelOrigin: resource.OriginGlobal})
			}
			out = append(out, r)
		}
	}
	out = append(out, &resource.Resource{Meta: resource.Meta{Type: resource.TypeMesh, Name: "default"}, Spec: &resource.MeshSpec{}}, meshTraceOf("default", "plain", 7))
	return out
}

func meshTraceOf(m, name string, v int) *resource.Resource {
	backends := []resource.Backend{{Type: resource.BackendZipkin, Zipkin: &resource.ZipkinBackend{URL: "http://zipkin:9411/api/v2/spans"}}}
	return &resource.Resource{Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: m, Name: name},
		Spec: &resource.MeshTraceSpec{TargetRef: &resource.TargetRef{Kind: resource.KindMesh},
			Default: &resource.MeshTraceConf{Backends: &backends, Sampling: &resource.Sampling{Overall: resource.Int(int64(v))}}}}
}

// encodeResource writes what json.Marshal wrote before it called
// MarshalJSON itself: the bytes zones of any version receive are unchanged.
func TestEncodeResourceIsJSONMarshal(t *testing.T) {
	rs := seedResources(t)
	odd := meshTraceOf("default", "a<b>&c", 1)
	odd.Labels = map[string]string{"k\u2028": "caf\u00e9 \"x\"", "a": "<script>"}
	odd.CreationTime = time.Date(2026, 11, 30, 4, 48, 57, 1, time.FixedZone("x", 3600))
	rs = append(rs, odd)
	for _, r := range rs {
		got, err := encodeResource(r)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s:\nencodeResource %s\njson.Marshal   %s", r.Key(), got, want)
		}
	}
}

// What global encodes, the shorter decoding reads exactly as the strict
// decoder does (policies; other types are left to the strict decoder).
func TestDecodeEncodedMatchesStrict(t *testing.T) {
	policies := 0
	for _, r := range seedResources(t) {
		b, err := encodeResource(r)
		if err != nil {
			t.Fatal(err)
		}
		strict, err := decodeResource(b)
		if err != nil {
			t.Fatalf("%s: strict: %v", r.Key(), err)
		}
		fast, err := decodeEncoded(b)
		d, _ := resource.Lookup(r.Type)
		if !d.IsPolicy {
			if err == nil {
				t.Fatalf("%s: not a policy, but decoded the short way", r.Key())
			}
			continue
		}
		policies++
		if err != nil {
			t.Fatalf("%s: %v\n%s", r.Key(), err, b)
		}
		if !reflect.DeepEqual(fast, strict) {
			t.Fatalf("%s: decoded differently\nfast:   %+v\nstrict: %+v", r.Key(), fast, strict)
		}
	}
	if policies < 5 {
		t.Fatalf("only %d policies among the seeds", policies)
	}
}

// Whatever the shorter decoding does not take is refused with the strict
// decoder's reason; an invalid policy with the validator's.
func TestDecodeWireRefusesWithTheStrictReason(t *testing.T) {
	good := `{"type":"MeshTrace","mesh":"default","name":"p","spec":{"targetRef":{"kind":"Mesh"},"default":{"backends":[{"zipkin":{"url":"http://z:9411/api/v2/spans","traceId128bit":false}}]}}}`
	cases := map[string]string{
		"unknown field (a newer global)":   strings.Replace(good, `"traceId128bit":false`, `"traceId128bit":false,"sampled":true`, 1),
		"unknown top-level field":          strings.Replace(good, `"name":"p",`, `"name":"p","owner":"x",`, 1),
		"wrong type":                       strings.Replace(good, `"traceId128bit":false`, `"traceId128bit":"no"`, 1),
		"data after the value":             good + `{}`,
		"not JSON":                         `{"type":"MeshTrace"`,
		"spec not an object":               strings.Replace(good, `"spec":{`, `"spec":[{`, 1)[:len(good)] + `]}`,
		"invalid: no backends, no default": `{"type":"MeshTrace","mesh":"default","name":"p","spec":{}}`,
		"invalid name":                     strings.Replace(good, `"name":"p"`, `"name":"P_"`, 1),
	}
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			msgName := "p"
			if name == "invalid name" {
				msgName = "P_"
			}
			_, got := decodeWire(&kdsv1.Resource{Type: "MeshTrace", Mesh: "default", Name: msgName, Json: []byte(doc)})
			want := func() error {
				r, err := decodeResource([]byte(doc))
				if err != nil {
					return err
				}
				return resource.Validate(r)
			}()
			if want == nil || got == nil || got.Error() != want.Error() {
				t.Fatalf("decodeWire: %v\nstrict:     %v", got, want)
			}
		})
	}
	if _, err := decodeWire(&kdsv1.Resource{Type: "MeshTrace", Mesh: "default", Name: "p", Json: []byte(good)}); err != nil {
		t.Fatalf("the valid policy: %v", err)
	}
}

// FuzzDecodeEncoded: on what global's encoder writes (the input is its own
// encoding of what was decoded), the shorter decoding and the strict one
// accept the same and read it equal.
func FuzzDecodeEncoded(f *testing.F) {
	for _, r := range seedResources(f) {
		b, err := encodeResource(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ferr := decodeEncoded(data)
		strict, serr := decodeResource(data)
		if ferr == nil {
			if b, err := encodeResource(fast); err == nil && bytes.Equal(b, data) {
				if serr != nil {
					t.Fatalf("strict refuses what the short way took: %v\n%s", serr, data)
				}
				if !reflect.DeepEqual(fast, strict) {
					t.Fatalf("decoded differently\nfast:   %+v\nstrict: %+v", fast, strict)
				}
			}
		}
		if serr == nil {
			d, _ := resource.Lookup(strict.Type)
			if b, err := encodeResource(strict); err == nil && bytes.Equal(b, data) && d.IsPolicy {
				if ferr != nil {
					t.Fatalf("the short way refuses global's own encoding: %v\n%s", ferr, data)
				}
				if !reflect.DeepEqual(fast, strict) {
					t.Fatalf("decoded differently\nfast:   %+v\nstrict: %+v", fast, strict)
				}
			}
		}
	})
}

// BenchmarkDecodeWire measures what a zone does with each policy it
// receives before writing it: decode and validate (received), against the
// strict decoder alone on the same bytes (strict).
func BenchmarkDecodeWire(b *testing.B) {
	r := meshTraceOf("default", "burst-1", 10)
	r.CreationTime = time.Date(2026, 11, 30, 4, 48, 57, 123456789, time.UTC)
	r.ModificationTime = r.CreationTime
	js, err := encodeResource(r)
	if err != nil {
		b.Fatal(err)
	}
	w := &kdsv1.Resource{Type: string(r.Type), Mesh: r.Mesh, Name: r.Name, Json: js}
	b.Run("strict", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, err := decodeResource(js)
			if err != nil {
				b.Fatal(err)
			}
			if err := resource.Validate(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("received", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeWire(w); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEncodeResource measures what global does once per changed policy
// for all zones: its Universal JSON, through json.Marshal (as before) and
// as encodeResource writes it.
func BenchmarkEncodeResource(b *testing.B) {
	r := meshTraceOf("default", "burst-1", 10)
	r.CreationTime = time.Date(2026, 11, 30, 4, 48, 57, 123456789, time.UTC)
	r.ModificationTime = r.CreationTime
	r.Labels = map[string]string{resource.LabelOrigin: resource.OriginGlobal}
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encodeResource", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeResource(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkApplyBatch measures a zone applying batches of 40 new policies
// (a burst's batch) to a memory store: decoding, checks, the transaction
// with the cursor and the index. ns/op and allocs/op are per batch.
func BenchmarkApplyBatch(b *testing.B) { benchApplyBatch(b, store.NewMemory(), nil) }

// BenchmarkApplyBatchDurable is BenchmarkApplyBatch on a durable embedded
// etcd as a zone runs it, with a watcher taking every event (as the zone's
// xDS feed does; the store's watch hub decodes or reuses each): cpu-us per
// policy is the whole process's CPU (etcd's goroutines and GC too) from
// the batch's apply until its events were taken, a zone's CPU per synced
// policy without the timing of batches that the process benchmarks vary.
func BenchmarkApplyBatchDurable(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: b.TempDir(), AutoCompactionRetention: "0"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	wctx, stop := context.WithCancel(context.Background())
	defer stop()
	ch, err := st.Watch(wctx, store.WatchOptions{Types: []resource.Type{resource.TypeMeshTrace}})
	if err != nil {
		b.Fatal(err)
	}
	var events atomic.Int64
	taken := make(chan struct{}, 1)
	go func() {
		for resp := range ch {
			events.Add(int64(len(resp.Events)))
			select {
			case taken <- struct{}{}:
			default:
			}
		}
	}()
	benchApplyBatch(b, st, func(want int64) {
		for events.Load() < want {
			<-taken
		}
	})
}

// processCPU is the process's user and system CPU so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchApplyBatch applies batches of 40 new policies to st; wait, when set,
// returns once the store's watcher took n events.
func benchApplyBatch(b *testing.B, st store.Store, wait func(n int64)) {
	ctx := context.Background()
	c, err := NewClient(ClientConfig{Store: st, Addresses: []string{"global:5685"}, Token: "t", Insecure: true})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.Put(ctx, &resource.Resource{Meta: resource.Meta{Type: resource.TypeMesh, Name: "default"}, Spec: &resource.MeshSpec{}}, store.AnyVersion); err != nil {
		b.Fatal(err)
	}
	a := newApplier(c, "global-store", "", cursor{}, hclog.NewNullLogger())
	if err := a.loadIndex(ctx); err != nil {
		b.Fatal(err)
	}
	created := time.Date(2026, 11, 30, 4, 48, 57, 123456789, time.UTC)
	var rev int64
	var cpu time.Duration
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		batch := &kdsv1.Batch{Nonce: uint64(i + 1)}
		for j := range 40 {
			rev++
			r := meshTraceOf("default", fmt.Sprintf("burst-%d-%d", i, j), j)
			r.CreationTime, r.ModificationTime = created, created
			js, err := encodeResource(r)
			if err != nil {
				b.Fatal(err)
			}
			batch.Resources = append(batch.Resources, &kdsv1.Resource{Type: string(r.Type), Mesh: r.Mesh, Name: r.Name, Json: js, Revision: rev})
		}
		batch.Revision = rev
		b.StartTimer()
		cpu0 := processCPU()
		ack, err := a.apply(ctx, batch)
		if err != nil || len(ack.GetErrors()) > 0 {
			b.Fatalf("apply: %v %v", err, ack.GetErrors())
		}
		if wait != nil {
			wait(rev)
		}
		cpu += processCPU() - cpu0
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*40), "cpu-us/policy")
}
