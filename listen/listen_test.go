package listen

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func serveHTTP(t *testing.T, max int, h http.Handler) (*Listener, string) {
	t.Helper()
	ln, err := TCP("test", "127.0.0.1:0", max)
	if err != nil {
		t.Fatal(err)
	}
	srv := HTTPServer(h, ln)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln, ln.Addr().String()
}

func waitOpen(t *testing.T, ln *Listener, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for ln.Open() != n {
		if time.Now().After(deadline) {
			t.Fatalf("open connections %d, want %d", ln.Open(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A flood of idle connections never holds more than the cap, and a client
// doing work still gets its answer.
func TestIdleFloodEvictsOldest(t *testing.T) {
	ln, addr := serveHTTP(t, 8, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	var idle []net.Conn
	for range 50 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	waitOpen(t, ln, 8)
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("request during an idle flood: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
	if ln.Open() > 8 {
		t.Fatalf("%d open connections above the cap", ln.Open())
	}
	// The oldest idle connections were the ones closed.
	idle[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err == nil {
		t.Fatal("the oldest idle connection is still open")
	}
}

// A connection in the middle of a request is never evicted: at the cap with
// every connection busy, the newcomer is closed instead.
func TestBusyConnectionsAreKept(t *testing.T) {
	release := make(chan struct{})
	ln, addr := serveHTTP(t, 2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "done")
	}))
	defer close(release)
	var busy []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		busy = append(busy, c)
	}
	waitOpen(t, ln, 2)
	// Both are active once the server read their request line.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln.mu.Lock()
		n := 0
		for c := range ln.conns {
			if !c.idle.Load() {
				n++
			}
		}
		ln.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("requests never became active")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("newcomer was served above the cap")
	}
	release <- struct{}{}
	release <- struct{}{}
	for _, b := range busy {
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(b), nil)
		if err != nil {
			t.Fatalf("busy request lost: %v", err)
		}
		resp.Body.Close()
	}
}

// Every HTTP server has the timeouts and limits of an exposed listener.
func TestHTTPServerLimits(t *testing.T) {
	srv := HTTPServer(http.NotFoundHandler(), nil)
	for name, ok := range map[string]bool{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout > 0 && srv.ReadHeaderTimeout <= 10*time.Second,
		"ReadTimeout":       srv.ReadTimeout > 0 && srv.ReadTimeout <= 30*time.Second,
		"WriteTimeout":      srv.WriteTimeout > 0,
		"IdleTimeout":       srv.IdleTimeout > 0 && srv.IdleTimeout <= 2*time.Minute,
		"MaxHeaderBytes":    srv.MaxHeaderBytes > 0 && srv.MaxHeaderBytes <= 1<<20,
	} {
		if !ok {
			t.Errorf("%s not set to a bounded value", name)
		}
	}
}

// Bodies above MaxBodyBytes are refused, whether the client announced
// their length or sent them chunked; bodies up to it are read whole.
func TestBodyLimit(t *testing.T) {
	_, addr := serveHTTP(t, 4, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		fmt.Fprintf(w, "read %d", len(b))
	}))
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
	}{
		{name: "empty", size: 0},
		{name: "at the limit", size: MaxBodyBytes},
		{name: "over the limit", size: MaxBodyBytes + 1},
		{name: "chunked, at the limit", size: MaxBodyBytes, chunked: true},
		{name: "chunked, over the limit", size: MaxBodyBytes + 1, chunked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(strings.Repeat("x", tc.size))
			if tc.chunked {
				body = io.MultiReader(body) // no length: sent chunked
			}
			resp, err := http.Post("http://"+addr+"/", "text/plain", body)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.size > MaxBodyBytes {
				if resp.StatusCode != http.StatusRequestEntityTooLarge {
					t.Fatalf("status %d for an oversized body", resp.StatusCode)
				}
				return
			}
			if want := fmt.Sprintf("read %d", tc.size); resp.StatusCode != http.StatusOK || string(got) != want {
				t.Fatalf("%d %q, want 200 %q", resp.StatusCode, got, want)
			}
		})
	}
}

func TestFitFDLimit(t *testing.T) {
	for _, tc := range []struct {
		limit   int64
		caps    []int
		want    []int
		wantErr bool
	}{
		{limit: 100000, caps: []int{1024, 64, 1024}, want: []int{1024, 64, 1024}},
		{limit: 1024, caps: []int{1024, 64, 1024}, want: []int{372, 23, 372}},
		{limit: 256 + 24, caps: []int{1024, 64, 1024}, want: []int{11, 1, 11}},
		{limit: 200, caps: []int{10}, wantErr: true},
	} {
		caps := make([]Cap, len(tc.caps))
		for i := range tc.caps {
			caps[i] = Cap{Key: fmt.Sprint("k", i), Max: &tc.caps[i]}
		}
		note, err := fit(tc.limit, caps)
		if (err != nil) != tc.wantErr {
			t.Fatalf("limit %d: err %v", tc.limit, err)
		}
		if err != nil {
			continue
		}
		if fmt.Sprint(tc.caps) != fmt.Sprint(tc.want) {
			t.Errorf("limit %d: caps %v, want %v (%s)", tc.limit, tc.caps, tc.want, note)
		}
	}
}

// shorten sets *v to d for the test.
func shorten(t *testing.T, v *time.Duration, d time.Duration) {
	old := *v
	*v = d
	t.Cleanup(func() { *v = old })
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// A request whose body trickles in is cut at ReadTimeout, before any
// authentication could matter.
func TestSlowBodyIsCut(t *testing.T) {
	shorten(t, &ReadTimeout, 300*time.Millisecond)
	_, addr := serveHTTP(t, 4, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		io.WriteString(w, "read")
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
	start := time.Now()
	if !closedWithin(c, 5*time.Second) {
		t.Fatal("slow body held for 5s")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("slow body held for %s", took)
	}
}

// A gRPC connection that never finishes its TLS handshake is closed at the
// handshake deadline; one that finishes it but opens no stream is closed
// once idle.
func TestGRPCHandshakeAndIdleDeadlines(t *testing.T) {
	shorten(t, &HandshakeTimeout, 300*time.Millisecond)
	shorten(t, &MaxConnectionIdle, 500*time.Millisecond)
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir)
	creds, err := credentials.NewServerTLSFromFile(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := TCP("grpc-test", "127.0.0.1:0", 8)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(append(ln.GRPCServerOptions(4), grpc.Creds(creds))...)
	go gs.Serve(ln)
	defer gs.Stop()

	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if !closedWithin(raw, 5*time.Second) {
		t.Fatal("connection without a TLS handshake kept for 5s")
	}

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	defer tc.Close()
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	// HTTP/2 preface and empty SETTINGS, then nothing.
	io.WriteString(tc, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	if !closedWithin(tc, 10*time.Second) {
		t.Fatal("connection without a stream kept for 10s")
	}
}

func selfSigned(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cert, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, keyFile
}

// A gRPC connection with an open stream is never evicted by a flood of idle
// connections.
func TestGRPCStreamSurvivesIdleFlood(t *testing.T) {
	ln, err := TCP("grpc-busy", "127.0.0.1:0", 4)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(ln.GRPCServerOptions(4)...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	defer gs.Stop()

	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	for range 40 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	// Every dial is accepted: the 40 idle ones and the stream's connection
	// make 41, of which 37 are evicted to keep 4 open. (Open reaching 4
	// alone can be seen before any eviction.)
	deadline := time.Now().Add(5 * time.Second)
	for ln.Evicted() < 37 {
		if time.Now().After(deadline) {
			t.Fatalf("evicted %d connections, want 37 (open %d)", ln.Evicted(), ln.Open())
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitOpen(t, ln, 4)
	// The stream still delivers: a status change arrives.
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	resp, err := watch.Recv()
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("stream after the flood: %v %v", resp, err)
	}
}

// BenchmarkMaxBytesHandler: a request with an announced body of 1 KiB
// through http.MaxBytesHandler and through maxBytesHandler.
func BenchmarkMaxBytesHandler(b *testing.B) {
	body := strings.Repeat("x", 1024)
	read := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) })
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{
		{"net/http", http.MaxBytesHandler(read, MaxBodyBytes)},
		{"listen", maxBytesHandler(read, MaxBodyBytes)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			r := httptest.NewRequest(http.MethodPut, "/", nil)
			w := httptest.NewRecorder()
			br := strings.NewReader(body)
			rc := io.NopCloser(br)
			for b.Loop() {
				br.Reset(body)
				r.Body, r.ContentLength = rc, int64(len(body))
				tc.h.ServeHTTP(w, r)
			}
		})
	}
}
