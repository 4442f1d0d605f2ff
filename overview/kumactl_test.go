package overview

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	_ "google.golang.org/protobuf/types/known/timestamppb"
	_ "google.golang.org/protobuf/types/known/wrapperspb"
)

// The messages kumactl 2.7.29 decodes our answers into, rebuilt from Kuma's
// .proto files (api/mesh/v1alpha1/{dataplane,dataplane_insight,
// dataplane_overview,mesh_insight}.proto, api/system/v1alpha1/{zone,
// zone_insight,zone_overview}.proto) with the fields kumactl reads and their
// exact types. kumactl decodes a spec with jsonpb allowing unknown fields, so
// the check here is protojson with DiscardUnknown: a wrong type (a counter as
// a JSON number where a string is fine, a time not in RFC 3339, an enum name)
// fails as it would in kumactl.

type fieldDef struct {
	name   string
	num    int32
	typ    descriptorpb.FieldDescriptorProto_Type
	ref    string // message or enum type, fully qualified
	repeat bool
}

func f(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, ref ...string) fieldDef {
	d := fieldDef{name: name, num: num, typ: typ}
	if len(ref) > 0 {
		d.ref = ref[0]
	}
	return d
}

func list(d fieldDef) fieldDef { d.repeat = true; return d }

const (
	tString = descriptorpb.FieldDescriptorProto_TYPE_STRING
	tUint32 = descriptorpb.FieldDescriptorProto_TYPE_UINT32
	tUint64 = descriptorpb.FieldDescriptorProto_TYPE_UINT64
	tBool   = descriptorpb.FieldDescriptorProto_TYPE_BOOL
	tMsg    = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	tEnum   = descriptorpb.FieldDescriptorProto_TYPE_ENUM
	ts      = ".google.protobuf.Timestamp"
)

func message(name string, fields ...fieldDef) *descriptorpb.DescriptorProto {
	m := &descriptorpb.DescriptorProto{Name: proto.String(name)}
	for _, fd := range fields {
		label := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		if fd.repeat {
			label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		}
		p := &descriptorpb.FieldDescriptorProto{Name: proto.String(fd.name), Number: proto.Int32(fd.num), Type: fd.typ.Enum(), Label: label.Enum()}
		if fd.ref != "" {
			p.TypeName = proto.String(fd.ref)
		}
		m.Field = append(m.Field, p)
	}
	return m
}

// mapOf adds to m the entry message of a map field and the field itself.
func mapOf(m *descriptorpb.DescriptorProto, pkg, field string, num int32, value fieldDef) {
	entryName := strings.ToUpper(field[:1]) + field[1:] + "Entry"
	entry := message(entryName, f("key", 1, tString), fieldDef{name: "value", num: 2, typ: value.typ, ref: value.ref})
	entry.Options = &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)}
	m.NestedType = append(m.NestedType, entry)
	m.Field = append(m.Field, &descriptorpb.FieldDescriptorProto{
		Name: proto.String(field), Number: proto.Int32(num), Type: tMsg.Enum(),
		Label: descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(), TypeName: proto.String("." + pkg + "." + m.GetName() + "." + entryName),
	})
}

func kumaFile(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	const pkg = "kuma"
	p := func(n string) string { return "." + pkg + "." + n }
	stats := message("Stats", f("responses_sent", 1, tUint64), f("responses_acknowledged", 2, tUint64), f("responses_rejected", 3, tUint64))
	status := message("DiscoverySubscriptionStatus", f("last_update_time", 1, tMsg, ts),
		f("total", 2, tMsg, p("Stats")), f("cds", 3, tMsg, p("Stats")), f("eds", 4, tMsg, p("Stats")), f("lds", 5, tMsg, p("Stats")), f("rds", 6, tMsg, p("Stats")))
	envoyVersion := message("EnvoyVersion", f("version", 1, tString), f("build", 2, tString), f("kumaDpCompatible", 3, tBool))
	kumaDPVersion := message("KumaDpVersion", f("version", 1, tString), f("gitTag", 2, tString), f("gitCommit", 3, tString), f("buildDate", 4, tString), f("kumaCpCompatible", 5, tBool))
	version := message("Version", f("kumaDp", 1, tMsg, p("KumaDpVersion")), f("envoy", 2, tMsg, p("EnvoyVersion")))
	mapOf(version, pkg, "dependencies", 3, f("", 0, tString))
	sub := message("DiscoverySubscription", f("id", 1, tString), f("control_plane_instance_id", 2, tString),
		f("connect_time", 3, tMsg, ts), f("disconnect_time", 4, tMsg, ts), f("status", 5, tMsg, p("DiscoverySubscriptionStatus")),
		f("version", 6, tMsg, p("Version")), f("generation", 7, tUint32))
	dpInsight := message("DataplaneInsight", list(f("subscriptions", 1, tMsg, p("DiscoverySubscription"))))

	inbound := message("Inbound", f("port", 3, tUint32), f("servicePort", 4, tUint32), f("serviceAddress", 6, tString), f("address", 5, tString))
	mapOf(inbound, pkg+".Networking", "tags", 2, f("", 0, tString))
	outbound := message("Outbound", f("address", 3, tString), f("port", 4, tUint32))
	mapOf(outbound, pkg+".Networking", "tags", 5, f("", 0, tString))
	gateway := message("Gateway", f("type", 2, tEnum, p("Networking.Gateway.GatewayType")))
	mapOf(gateway, pkg+".Networking", "tags", 1, f("", 0, tString))
	gateway.EnumType = []*descriptorpb.EnumDescriptorProto{{Name: proto.String("GatewayType"), Value: []*descriptorpb.EnumValueDescriptorProto{
		{Name: proto.String("DELEGATED"), Number: proto.Int32(0)}, {Name: proto.String("BUILTIN"), Number: proto.Int32(1)}}}}
	admin := message("EnvoyAdmin", f("port", 1, tUint32))
	networking := message("Networking", f("address", 5, tString), f("advertisedAddress", 7, tString),
		f("gateway", 3, tMsg, p("Networking.Gateway")), list(f("inbound", 1, tMsg, p("Networking.Inbound"))),
		list(f("outbound", 2, tMsg, p("Networking.Outbound"))), f("admin", 8, tMsg, p("EnvoyAdmin")))
	networking.NestedType = append(networking.NestedType, inbound, outbound, gateway)
	dataplane := message("Dataplane", f("networking", 1, tMsg, p("Networking")))
	dpOverview := message("DataplaneOverview", f("dataplane", 1, tMsg, p("Dataplane")), f("dataplane_insight", 2, tMsg, p("DataplaneInsight")))

	kdsStatus := message("KDSSubscriptionStatus", f("last_update_time", 1, tMsg, ts), f("total", 2, tMsg, p("Stats")))
	mapOf(kdsStatus, pkg, "stat", 3, f("", 0, tMsg, p("Stats")))
	cpVersion := message("KumaCpVersion", f("version", 1, tString), f("gitTag", 2, tString), f("gitCommit", 3, tString), f("buildDate", 4, tString), f("kumaCpGlobalCompatible", 5, tBool))
	kdsVersion := message("KDSVersion", f("kumaCp", 1, tMsg, p("KumaCpVersion")))
	kdsSub := message("KDSSubscription", f("id", 1, tString), f("global_instance_id", 2, tString), f("connect_time", 3, tMsg, ts),
		f("disconnect_time", 4, tMsg, ts), f("status", 5, tMsg, p("KDSSubscriptionStatus")), f("version", 6, tMsg, p("KDSVersion")),
		f("generation", 7, tUint32), f("config", 8, tString), f("auth_token_provided", 9, tBool), f("zone_instance_id", 10, tString))
	zoneInsight := message("ZoneInsight", list(f("subscriptions", 1, tMsg, p("KDSSubscription"))))
	zone := message("Zone", f("enabled", 1, tMsg, ".google.protobuf.BoolValue"))
	zoneOverview := message("ZoneOverview", f("zone", 1, tMsg, p("Zone")), f("zone_insight", 2, tMsg, p("ZoneInsight")))

	dpStat := message("DataplaneStat", f("total", 1, tUint32), f("online", 2, tUint32), f("offline", 3, tUint32), f("partially_degraded", 4, tUint32))
	policyStat := message("PolicyStat", f("total", 1, tUint32))
	dpVersions := message("DpVersions")
	mapOf(dpVersions, pkg, "kumaDp", 1, f("", 0, tMsg, p("DataplaneStat")))
	mapOf(dpVersions, pkg, "envoy", 2, f("", 0, tMsg, p("DataplaneStat")))
	mtls := message("MTLS")
	mapOf(mtls, pkg, "issuedBackends", 1, f("", 0, tMsg, p("DataplaneStat")))
	mapOf(mtls, pkg, "supportedBackends", 2, f("", 0, tMsg, p("DataplaneStat")))
	serviceStat := message("ServiceStat", f("total", 1, tUint32), f("internal", 2, tUint32), f("external", 3, tUint32))
	byType := message("DataplanesByType", f("standard", 1, tMsg, p("DataplaneStat")), f("gateway", 2, tMsg, p("DataplaneStat")),
		f("gatewayBuiltin", 3, tMsg, p("DataplaneStat")), f("gatewayDelegated", 4, tMsg, p("DataplaneStat")))
	meshInsight := message("MeshInsight", f("dataplanes", 2, tMsg, p("DataplaneStat")), f("dpVersions", 4, tMsg, p("DpVersions")),
		f("mTLS", 5, tMsg, p("MTLS")), f("services", 6, tMsg, p("ServiceStat")), f("dataplanesByType", 7, tMsg, p("DataplanesByType")))
	mapOf(meshInsight, pkg, "policies", 3, f("", 0, tMsg, p("PolicyStat")))

	file := &descriptorpb.FileDescriptorProto{
		Name: proto.String("kuma_test.proto"), Package: proto.String(pkg), Syntax: proto.String("proto3"),
		Dependency: []string{"google/protobuf/timestamp.proto", "google/protobuf/wrappers.proto"},
		MessageType: []*descriptorpb.DescriptorProto{stats, status, envoyVersion, kumaDPVersion, version, sub, dpInsight,
			admin, networking, dataplane, dpOverview, kdsStatus, cpVersion, kdsVersion, kdsSub, zoneInsight, zone, zoneOverview,
			dpStat, policyStat, dpVersions, mtls, serviceStat, byType, meshInsight},
	}
	fd, err := protodesc.NewFile(file, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// kumaMeta is kumactl's v1alpha1.ResourceMeta, decoded with encoding/json.
type kumaMeta struct {
	Type             string            `json:"type"`
	Mesh             string            `json:"mesh"`
	Name             string            `json:"name"`
	CreationTime     time.Time         `json:"creationTime"`
	ModificationTime time.Time         `json:"modificationTime"`
	Labels           map[string]string `json:"labels"`
}

// decodeAsKumactl decodes one list answer the way kumactl's
// rest.JSON.UnmarshalListToCore does and returns the specs.
func decodeAsKumactl(t *testing.T, body []byte, md protoreflect.MessageDescriptor, wantType string) []*dynamicpb.Message {
	t.Helper()
	var list struct {
		Total uint32            `json:"total"`
		Items []json.RawMessage `json:"items"`
		Next  *string           `json:"next"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("list: %v", err)
	}
	var out []*dynamicpb.Message
	for i, raw := range list.Items {
		var meta kumaMeta
		if err := json.Unmarshal(raw, &meta); err != nil {
			t.Fatalf("item %d meta: %v", i, err)
		}
		if meta.Type != wantType || meta.Name == "" {
			t.Fatalf("item %d meta: %+v", i, meta)
		}
		spec := dynamicpb.NewMessage(md)
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, spec); err != nil {
			t.Fatalf("item %d is not a %s kumactl can read: %v\n%s", i, md.Name(), err, raw)
		}
		out = append(out, spec)
	}
	return out
}

func get1(m protoreflect.Message, path ...string) protoreflect.Value {
	var v protoreflect.Value
	for i, name := range path {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		v = m.Get(fd)
		if i < len(path)-1 {
			m = v.Message()
		}
	}
	return v
}

// TestKumactlDecodesTheAnswers: what kumactl's tables read comes out of our
// answers with the values we meant.
func TestKumactlDecodesTheAnswers(t *testing.T) {
	fd := kumaFile(t)
	srv := server(t)

	_, body := get(t, srv, "/meshes/default/dataplanes+insights")
	dps := decodeAsKumactl(t, body, fd.Messages().ByName("DataplaneOverview"), "DataplaneOverview")
	if len(dps) != 3 {
		t.Fatalf("%d dataplanes", len(dps))
	}
	backend := dps[1] // west.backend-1, online
	sub := get1(backend, "dataplane_insight", "subscriptions").List().Get(0).Message()
	if got := get1(sub, "status", "total", "responses_sent").Uint(); got != 4 {
		t.Errorf("TOTAL UPDATES = %d, want 4", got)
	}
	if got := get1(sub, "status", "total", "responses_rejected").Uint(); got != 1 {
		t.Errorf("TOTAL ERRORS = %d, want 1", got)
	}
	if get1(sub, "connect_time", "seconds").Int() != t0.Unix() || sub.Has(sub.Descriptor().Fields().ByName("disconnect_time")) {
		t.Errorf("online proxy: connect/disconnect times %v", sub)
	}
	if got := get1(sub, "version", "envoy", "version").String(); got != "1.30.1" {
		t.Errorf("ENVOY VERSION = %q", got)
	}
	if got := get1(sub, "control_plane_instance_id").String(); got != "west" {
		t.Errorf("control plane = %q", got)
	}
	tags := get1(backend, "dataplane", "networking", "inbound").List().Get(0).Message()
	if got := get1(tags, "tags").Map().Get(protoreflect.ValueOfString("kuma.io/service").MapKey()).String(); got != "backend" {
		t.Errorf("TAGS kuma.io/service = %q", got)
	}
	frontend := get1(dps[0], "dataplane_insight", "subscriptions").List().Get(0).Message()
	if !frontend.Has(frontend.Descriptor().Fields().ByName("disconnect_time")) {
		t.Error("the disconnected proxy has no disconnect time: kumactl would show it Online")
	}

	_, body = get(t, srv, "/zones+insights")
	zones := decodeAsKumactl(t, body, fd.Messages().ByName("ZoneOverview"), "ZoneOverview")
	if len(zones) != 2 {
		t.Fatalf("%d zones", len(zones))
	}
	east := get1(zones[0], "zone_insight", "subscriptions").List().Get(0).Message()
	if get1(east, "status", "total", "responses_sent").Uint() != 4 || get1(east, "status", "total", "responses_rejected").Uint() != 1 ||
		get1(east, "global_instance_id").String() != "global-1" {
		t.Errorf("east's KDS subscription: %v", east)
	}
	var cfg struct {
		Store struct {
			Type string `json:"type"`
		} `json:"store"`
	}
	if err := json.Unmarshal([]byte(get1(east, "config").String()), &cfg); err != nil || cfg.Store.Type == "" {
		t.Errorf("BACKEND from config %q: %v", get1(east, "config").String(), err)
	}
	if get1(zones[1], "zone", "enabled", "value").Bool() {
		t.Error("west is disabled but reads as enabled")
	}

	_, body = get(t, srv, "/mesh-insights")
	meshes := decodeAsKumactl(t, body, fd.Messages().ByName("MeshInsight"), "MeshInsight")
	if len(meshes) != 1 || get1(meshes[0], "dataplanes", "total").Uint() != 3 || get1(meshes[0], "dataplanes", "online").Uint() != 1 {
		t.Fatalf("mesh insights: %v", meshes)
	}
	pol := get1(meshes[0], "policies").Map().Get(protoreflect.ValueOfString("MeshTrace").MapKey())
	if !pol.IsValid() || pol.Message().Get(pol.Message().Descriptor().Fields().ByName("total")).Uint() != 1 {
		t.Errorf("MeshTrace count: %v", pol)
	}

	// kumactl inspect meshtrace NAME decodes with encoding/json into
	// PolicyInspectEntryList; entries without a known kind fail there.
	code, body := get(t, srv, "/meshes/default/meshtraces/trace-west/dataplanes")
	var entries struct {
		Total uint32 `json:"total"`
		Items []struct {
			Kind      string `json:"kind"`
			Dataplane struct {
				Mesh string `json:"mesh"`
				Name string `json:"name"`
			} `json:"dataplane"`
			Attachments []struct {
				Type string `json:"type"`
				Name string `json:"name"`
			} `json:"attachments"`
		} `json:"items"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &entries) != nil || entries.Total != 2 {
		t.Fatalf("policy inspect: %d %s", code, body)
	}
	for _, e := range entries.Items {
		if e.Kind != "SidecarDataplane" || e.Dataplane.Mesh != "default" || len(e.Attachments) != 1 || e.Attachments[0].Type != "dataplane" {
			t.Errorf("entry %+v", e)
		}
	}
}
