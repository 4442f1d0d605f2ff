package main

import (
	"context"
	"crypto/rand"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// otlpSpanName is the operation name of spans sent over OTLP, so a test can
// tell them from the Zipkin ones (e2e-emit) in a collector.
const otlpSpanName = "e2e-emit-otlp"

// postOTLP does what Envoy's OpenTelemetry tracer does for a sampled
// request: it exports one span over OTLP/gRPC to endpoint (host:port), with
// service.name = service.
func postOTLP(ctx context.Context, endpoint, service string) Emitted {
	url := "grpc://" + endpoint
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return Emitted{URL: url, Error: err.Error()}
	}
	defer conn.Close()
	traceID, spanID := make([]byte, 16), make([]byte, 8)
	_, _ = rand.Read(traceID)
	_, _ = rand.Read(spanID)
	now := time.Now()
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{
			Key:   "service.name",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: service}},
		}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
			TraceId:           traceID,
			SpanId:            spanID,
			Name:              otlpSpanName,
			Kind:              tracepb.Span_SPAN_KIND_SERVER,
			StartTimeUnixNano: uint64(now.Add(-time.Millisecond).UnixNano()),
			EndTimeUnixNano:   uint64(now.UnixNano()),
		}}}},
	}}}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(ctx, req); err != nil {
		return Emitted{URL: url, Error: err.Error()}
	}
	return Emitted{URL: url, Status: 200}
}
