package resource

import "testing"

func TestMeshGatewayValidation(t *testing.T) {
	gw := func(body string) string { return "type: MeshGateway\nmesh: default\nname: edge\n" + body }
	tests := []struct {
		name, doc string
		want      ValidationErrors
	}{
		{"ok", gw("selectors:\n- match: {kuma.io/service: edge}\nconf:\n  listeners:\n  - {port: 8080, protocol: HTTP, hostname: foo.example.com, tags: {port: http-8080}}\n  - {port: 8080, protocol: HTTP, hostname: '*.example.com'}\n  - {port: 9000, protocol: TCP}\n  - {port: 8443, protocol: HTTPS, tls: {mode: TERMINATE}}\n"), nil},
		{"nothing", gw("selectors: []\n"), ValidationErrors{v("selectors", "must have at least one element"), v("conf", "cannot be empty")}},
		{"selector without service", gw("selectors:\n- match: {app: edge}\nconf:\n  listeners: []\n"), ValidationErrors{
			v("selectors[0].match", `mandatory tag "kuma.io/service" is missing`),
			v("conf.listeners", "cannot be empty"),
		}},
		{"listeners", gw("selectors:\n- match: {kuma.io/service: edge}\ntags: {kuma.io/service: x}\nconf:\n  listeners:\n  - {port: 0, protocol: UDP, hostname: 'a b'}\n  - {port: 80, protocol: HTTP}\n  - {port: 80, protocol: TCP}\n  - {port: 443, protocol: HTTPS}\n"), ValidationErrors{
			v(`tags["kuma.io/service"]`, `tag name must not be "kuma.io/service"`),
			v("conf.listeners[0].hostname", "invalid hostname"),
			v("conf.listeners[0].port", "port must be in the range [1, 65535]"),
			v("conf.listeners[0].protocol", "must be one of HTTP, HTTPS, TCP, TLS"),
			v("conf.listeners[3].tls", "cannot be empty"),
			v("conf.listeners[1]", "protocol conflicts with other listeners on this port"),
			v("conf.listeners[1]", "multiple listeners for hostname on this port"),
			v("conf.listeners[2]", "protocol conflicts with other listeners on this port"),
			v("conf.listeners[2]", "multiple listeners for hostname on this port"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkViolations(t, tt.doc, tt.want) })
	}
}

func TestMeshGatewaySelects(t *testing.T) {
	s := &MeshGatewaySpec{Selectors: []Selector{{Match: map[string]string{TagService: "edge"}}, {Match: map[string]string{TagService: "edge", "env": "prod"}}}}
	if ok, n := s.Selects(map[string]string{TagService: "edge", "env": "prod"}); !ok || n != 2 {
		t.Fatalf("selects %v %d", ok, n)
	}
	if ok, _ := s.Selects(map[string]string{TagService: "other"}); ok {
		t.Fatal("selected another service")
	}
}
