package main

import (
	"context"
	"net"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// otlpPath is what a recorded OTLP export shows as its path.
const otlpPath = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	rec *recorder
}

// Export records one OTLP export like a Zipkin POST: span count, each span's
// service.name and name.
func (s *traceService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	rec := Request{Time: time.Now().UTC(), Method: "OTLP", Path: otlpPath, Bytes: 0}
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				rec.Spans++
				rec.Services = append(rec.Services, service)
				rec.Operations = append(rec.Operations, sp.GetName())
			}
		}
	}
	s.rec.record(rec)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// serveOTLP accepts OTLP/gRPC exports on addr until the returned stop is called.
func serveOTLP(addr string, rec *recorder, errc chan<- error) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(16<<20), grpc.ConnectionTimeout(10*time.Second))
	coltracepb.RegisterTraceServiceServer(gs, &traceService{rec: rec})
	go func() { errc <- gs.Serve(ln) }()
	return gs.Stop, nil
}
