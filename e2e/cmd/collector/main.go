// Command collector is the e2e suite's stand-in for a tracing backend. It
// accepts Zipkin spans (POST /api/v2/spans) and any other request, and with
// --otlp OTLP/gRPC trace exports; it records each one and reports what it
// received on GET /received.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Request is one recorded request.
type Request struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Bytes  int       `json:"bytes"`
	// Spans is the number of Zipkin spans in a POST /api/v2/spans JSON body,
	// -1 when the body was not a JSON array.
	Spans int `json:"spans"`
	// Services are the spans' localEndpoint.serviceName values (OTLP: the
	// resource's service.name), one per span.
	Services []string `json:"services,omitempty"`
	// Operations are the spans' names, index-aligned with Services.
	Operations []string `json:"operations,omitempty"`
}

// Received is the body of GET /received.
type Received struct {
	Name     string    `json:"name"`
	Total    int       `json:"total"`
	Spans    int       `json:"spans"`
	Requests []Request `json:"requests"`
}

const maxKept = 1000

type recorder struct {
	name string
	mu   sync.Mutex
	recv Received
}

func (r *recorder) record(req Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recv.Total++
	if req.Spans > 0 {
		r.recv.Spans += req.Spans
	}
	if len(r.recv.Requests) < maxKept {
		r.recv.Requests = append(r.recv.Requests, req)
	}
}

func (r *recorder) snapshot() Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.recv
	out.Name = r.name
	out.Requests = append([]Request{}, r.recv.Requests...)
	return out
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recv = Received{}
}

func (r *recorder) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /received", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.snapshot())
	})
	mux.HandleFunc("DELETE /received", func(w http.ResponseWriter, _ *http.Request) {
		r.reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 16<<20))
		rec := Request{Time: time.Now().UTC(), Method: req.Method, Path: req.URL.Path, Bytes: len(body), Spans: -1}
		if req.Method == http.MethodPost && req.URL.Path == "/api/v2/spans" {
			var spans []struct {
				Name          string `json:"name"`
				LocalEndpoint struct {
					ServiceName string `json:"serviceName"`
				} `json:"localEndpoint"`
			}
			if json.Unmarshal(body, &spans) == nil {
				rec.Spans = len(spans)
				for _, sp := range spans {
					rec.Services = append(rec.Services, sp.LocalEndpoint.ServiceName)
					rec.Operations = append(rec.Operations, sp.Name)
				}
			}
		}
		r.record(rec)
		w.WriteHeader(http.StatusAccepted)
	})
	return mux
}

func main() {
	addr := flag.String("listen", ":9411", "address to listen on")
	otlp := flag.String("otlp", "", "address to accept OTLP/gRPC trace exports on (e.g. :4317); empty: off")
	name := flag.String("name", "", "name reported on /received (e.g. the zone)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *otlp, *name); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, addr, otlpAddr, name string) error {
	rec := &recorder{name: name}
	srv := &http.Server{Addr: addr, Handler: rec.handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("collector %q listening on %s", name, addr)
	if otlpAddr != "" {
		stopOTLP, err := serveOTLP(otlpAddr, rec, errc)
		if err != nil {
			return err
		}
		defer stopOTLP()
		log.Printf("collector %q accepting OTLP/gRPC on %s", name, otlpAddr)
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
