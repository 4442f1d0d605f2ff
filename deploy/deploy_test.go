// Package deploy holds example deployments; its tests check that they parse,
// fit together and configure valid control planes.
package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshtrace/meshtrace/global"
	"github.com/meshtrace/meshtrace/zone"
)

// Just enough of the Kubernetes types to check the manifests; unknown fields
// fail the parse, so a misspelt key does not pass silently.
type object struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   metadata `json:"metadata"`
	Spec       spec     `json:"spec"`
}

type metadata struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

type spec struct {
	// Service
	Type                     string            `json:"type,omitempty"`
	ClusterIP                string            `json:"clusterIP,omitempty"`
	PublishNotReadyAddresses bool              `json:"publishNotReadyAddresses,omitempty"`
	Selector                 *selectorOrLabels `json:"selector,omitempty"`
	Ports                    []servicePort     `json:"ports,omitempty"`
	// Deployment, StatefulSet
	Replicas             *int         `json:"replicas,omitempty"`
	ServiceName          string       `json:"serviceName,omitempty"`
	PodManagementPolicy  string       `json:"podManagementPolicy,omitempty"`
	Template             *podTemplate `json:"template,omitempty"`
	VolumeClaimTemplates []claimTmpl  `json:"volumeClaimTemplates,omitempty"`
}

// selectorOrLabels is a Service's selector (a map) or a workload's
// {matchLabels: map}.
type selectorOrLabels struct {
	MatchLabels map[string]string
}

func (s *selectorOrLabels) UnmarshalJSON(b []byte) error {
	var ml struct {
		MatchLabels map[string]string `json:"matchLabels"`
	}
	if err := yaml.UnmarshalStrict(b, &ml); err == nil && ml.MatchLabels != nil {
		s.MatchLabels = ml.MatchLabels
		return nil
	}
	return yaml.UnmarshalStrict(b, &s.MatchLabels)
}

type servicePort struct {
	Name       string `json:"name"`
	Port       int    `json:"port"`
	TargetPort string `json:"targetPort"`
}

type claimTmpl struct {
	Metadata metadata       `json:"metadata"`
	Spec     map[string]any `json:"spec"`
}

type podTemplate struct {
	Metadata metadata `json:"metadata"`
	Spec     podSpec  `json:"spec"`
}

type podSpec struct {
	SecurityContext *struct {
		RunAsNonRoot bool `json:"runAsNonRoot"`
		RunAsUser    int  `json:"runAsUser"`
		RunAsGroup   int  `json:"runAsGroup"`
		FSGroup      int  `json:"fsGroup,omitempty"`
	} `json:"securityContext"`
	Containers []container `json:"containers"`
	Volumes    []volume    `json:"volumes,omitempty"`
}

type container struct {
	Name            string          `json:"name"`
	Image           string          `json:"image"`
	Command         []string        `json:"command,omitempty"`
	Args            []string        `json:"args,omitempty"`
	Env             []envVar        `json:"env,omitempty"`
	Ports           []containerPort `json:"ports,omitempty"`
	ReadinessProbe  *probe          `json:"readinessProbe,omitempty"`
	LivenessProbe   *probe          `json:"livenessProbe,omitempty"`
	SecurityContext *struct {
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `json:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `json:"drop"`
		} `json:"capabilities"`
	} `json:"securityContext"`
	VolumeMounts []volumeMount `json:"volumeMounts,omitempty"`
}

type envVar struct {
	Name      string `json:"name"`
	Value     string `json:"value,omitempty"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `json:"name"`
			Key  string `json:"key"`
		} `json:"secretKeyRef,omitempty"`
		FieldRef *struct {
			FieldPath string `json:"fieldPath"`
		} `json:"fieldRef,omitempty"`
	} `json:"valueFrom,omitempty"`
}

type containerPort struct {
	Name          string `json:"name"`
	ContainerPort int    `json:"containerPort"`
}

type probe struct {
	HTTPGet *struct {
		Path string `json:"path"`
		Port string `json:"port"`
	} `json:"httpGet"`
	InitialDelaySeconds int `json:"initialDelaySeconds,omitempty"`
}

type volumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

type volume struct {
	Name     string          `json:"name"`
	EmptyDir *map[string]any `json:"emptyDir,omitempty"`
	Secret   *struct {
		SecretName string `json:"secretName"`
	} `json:"secret,omitempty"`
}

func load(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var out []object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			var o object
			if err := yaml.UnmarshalStrict(doc, &o); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Fatalf("%s document %d: apiVersion, kind and metadata.name are required", f, i)
			}
			if o.Kind != "Namespace" && o.Metadata.Namespace == "" {
				t.Fatalf("%s: %s %s has no namespace", f, o.Kind, o.Metadata.Name)
			}
			out = append(out, o)
		}
	}
	return out
}

func find(objs []object, kind, ns, name string) *object {
	for i := range objs {
		o := &objs[i]
		if o.Kind == kind && o.Metadata.Namespace == ns && o.Metadata.Name == name {
			return o
		}
	}
	return nil
}

func workloads(objs []object) []*object {
	var out []*object
	for i := range objs {
		if objs[i].Kind == "Deployment" || objs[i].Kind == "StatefulSet" {
			out = append(out, &objs[i])
		}
	}
	return out
}

func subset(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return len(want) > 0
}

func envOf(c container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		out[e.Name] = e.Value
	}
	return out
}

func TestManifestsFitTogether(t *testing.T) {
	objs := load(t)
	namespaces := map[string]bool{}
	for _, o := range objs {
		if o.Kind == "Namespace" {
			namespaces[o.Metadata.Name] = true
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}

	for _, w := range workloads(objs) {
		where := fmt.Sprintf("%s %s/%s", w.Kind, w.Metadata.Namespace, w.Metadata.Name)
		if !namespaces[w.Metadata.Namespace] {
			t.Errorf("%s: namespace %s is not created", where, w.Metadata.Namespace)
		}
		tmpl := w.Spec.Template
		if tmpl == nil || w.Spec.Selector == nil || !subset(w.Spec.Selector.MatchLabels, tmpl.Metadata.Labels) {
			t.Errorf("%s: selector does not select its own pods", where)
			continue
		}
		if sc := tmpl.Spec.SecurityContext; sc == nil || !sc.RunAsNonRoot || sc.RunAsUser == 0 {
			t.Errorf("%s: pods must run as non-root", where)
		}
		volumes := map[string]volume{}
		for _, v := range tmpl.Spec.Volumes {
			volumes[v.Name] = v
			if v.Secret != nil && !bytes.Contains(readme, []byte(v.Secret.SecretName)) {
				t.Errorf("%s: secret %s is not in README's list of secrets to create", where, v.Secret.SecretName)
			}
		}
		for _, c := range w.Spec.VolumeClaimTemplates {
			volumes[c.Metadata.Name] = volume{Name: c.Metadata.Name}
		}
		for _, c := range tmpl.Spec.Containers {
			if sc := c.SecurityContext; sc == nil || !sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
				*sc.AllowPrivilegeEscalation || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("%s/%s: read-only root, no privilege escalation and no capabilities are required", where, c.Name)
			}
			ports := map[string]bool{}
			for _, p := range c.Ports {
				ports[p.Name] = true
			}
			for _, p := range []*probe{c.ReadinessProbe, c.LivenessProbe} {
				if p == nil || p.HTTPGet == nil || !ports[p.HTTPGet.Port] {
					t.Errorf("%s/%s: probes must name one of its ports", where, c.Name)
				}
			}
			for _, m := range c.VolumeMounts {
				if _, ok := volumes[m.Name]; !ok {
					t.Errorf("%s/%s: mounts undeclared volume %s", where, c.Name, m.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !bytes.Contains(readme, []byte(e.ValueFrom.SecretKeyRef.Name)) {
					t.Errorf("%s/%s: secret %s is not in README's list", where, c.Name, e.ValueFrom.SecretKeyRef.Name)
				}
			}
		}
		if w.Kind == "StatefulSet" && find(objs, "Service", w.Metadata.Namespace, w.Spec.ServiceName) == nil {
			t.Errorf("%s: serviceName %s has no Service", where, w.Spec.ServiceName)
		}
	}

	// Every Service selects some pods and targets ports they name.
	for _, s := range objs {
		if s.Kind != "Service" {
			continue
		}
		var target *object
		for _, w := range workloads(objs) {
			if w.Metadata.Namespace == s.Metadata.Namespace && s.Spec.Selector != nil && subset(s.Spec.Selector.MatchLabels, w.Spec.Template.Metadata.Labels) {
				target = w
			}
		}
		if target == nil {
			t.Errorf("Service %s/%s selects no pods", s.Metadata.Namespace, s.Metadata.Name)
			continue
		}
		for _, p := range s.Spec.Ports {
			found := false
			for _, c := range target.Spec.Template.Spec.Containers {
				for _, cp := range c.Ports {
					found = found || cp.Name == p.TargetPort
				}
			}
			if !found {
				t.Errorf("Service %s/%s: targetPort %s is no container port of %s", s.Metadata.Namespace, s.Metadata.Name, p.TargetPort, target.Metadata.Name)
			}
		}
	}
}

// The etcd cluster has three members and global uses every one of them.
func TestGlobalUsesEveryEtcdMember(t *testing.T) {
	objs := load(t)
	etcd := find(objs, "StatefulSet", "meshtrace-system", "etcd")
	if etcd == nil || etcd.Spec.Replicas == nil || *etcd.Spec.Replicas != 3 {
		t.Fatalf("etcd StatefulSet with 3 replicas: %+v", etcd)
	}
	headless := find(objs, "Service", "meshtrace-system", etcd.Spec.ServiceName)
	if headless == nil || headless.Spec.ClusterIP != "None" {
		t.Fatalf("etcd needs a headless Service for stable member names")
	}
	var members []string
	for _, a := range etcd.Spec.Template.Spec.Containers[0].Command {
		if v, ok := strings.CutPrefix(a, "--initial-cluster="); ok {
			members = strings.Split(v, ",")
		}
	}
	var clients []string
	for i := range 3 {
		host := fmt.Sprintf("etcd-%d.%s.meshtrace-system.svc", i, headless.Metadata.Name)
		want := fmt.Sprintf("etcd-%d=http://%s:2380", i, host)
		if !slices.Contains(members, want) {
			t.Errorf("--initial-cluster %v lacks %s", members, want)
		}
		clients = append(clients, "http://"+host+":2379")
	}
	if len(members) != 3 {
		t.Errorf("--initial-cluster has %d members", len(members))
	}
	g := find(objs, "Deployment", "meshtrace-system", "meshtrace-global")
	if g == nil {
		t.Fatal("no meshtrace-global Deployment")
	}
	got := strings.Split(envOf(g.Spec.Template.Spec.Containers[0])["MESHTRACE_STORE_EXTERNAL_ENDPOINTS"], ",")
	if !slices.Equal(got, clients) {
		t.Errorf("global's etcd endpoints %v, want %v", got, clients)
	}
}

// Each control plane's environment is a configuration its mode accepts, and
// zones point at global's KDS Service.
func TestControlPlaneConfigsAreValid(t *testing.T) {
	objs := load(t)
	zones := 0
	for _, w := range workloads(objs) {
		for _, c := range w.Spec.Template.Spec.Containers {
			if !strings.Contains(c.Image, "meshtrace-cp") {
				continue
			}
			t.Run(w.Metadata.Namespace+"/"+w.Metadata.Name, func(t *testing.T) {
				mode := c.Args[0]
				// Mounted files are replaced by temporary files (the config
				// checks that certificates exist); secrets by placeholders.
				dir := t.TempDir()
				env := map[string]string{}
				for _, e := range c.Env {
					v := e.Value
					if e.ValueFrom != nil {
						v = "placeholder-" + e.Name
					}
					for _, m := range c.VolumeMounts {
						if rest, ok := strings.CutPrefix(v, m.MountPath+"/"); ok && m.ReadOnly {
							v = filepath.Join(dir, m.Name, rest)
							if err := os.MkdirAll(filepath.Dir(v), 0o755); err != nil {
								t.Fatal(err)
							}
							if err := os.WriteFile(v, []byte("x"), 0o600); err != nil {
								t.Fatal(err)
							}
						}
					}
					env[e.Name] = v
				}
				for _, kv := range os.Environ() {
					if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "MESHTRACE_") {
						t.Setenv(k, "")
						os.Unsetenv(k)
					}
				}
				ref := global.ConfigReference()
				if mode == "zone" {
					ref = zone.ConfigReference()
				}
				for k, v := range env {
					if !strings.Contains(ref, "`"+k+"`") {
						t.Errorf("%s is not a %s setting (see its configuration reference)", k, mode)
					}
					t.Setenv(k, v)
				}
				var err error
				switch mode {
				case "global":
					var cfg global.Config
					if cfg, err = global.LoadConfig(""); err == nil {
						err = cfg.Validate()
					}
				case "zone":
					zones++
					var cfg zone.Config
					if cfg, err = zone.LoadConfig(""); err == nil {
						err = cfg.Validate()
					}
					if err == nil {
						checkGlobalAddress(t, objs, cfg.Global.Addresses)
					}
				default:
					t.Fatalf("args %v: want global or zone", c.Args)
				}
				if err != nil {
					t.Fatalf("%s configuration: %v", mode, err)
				}
			})
		}
	}
	if zones != 2 {
		t.Errorf("%d zones, want 2", zones)
	}
}

var svcAddr = regexp.MustCompile(`^([a-z0-9-]+)\.([a-z0-9-]+)\.svc:(\d+)$`)

func checkGlobalAddress(t *testing.T, objs []object, addrs []string) {
	t.Helper()
	if len(addrs) != 1 {
		t.Fatalf("global addresses %v", addrs)
	}
	m := svcAddr.FindStringSubmatch(addrs[0])
	if m == nil {
		t.Fatalf("global address %q is not <service>.<namespace>.svc:<port>", addrs[0])
	}
	svc := find(objs, "Service", m[2], m[1])
	port, _ := strconv.Atoi(m[3])
	if svc == nil || !slices.ContainsFunc(svc.Spec.Ports, func(p servicePort) bool { return p.Port == port && p.TargetPort == "kds" }) {
		t.Fatalf("global address %q is no KDS port of a Service", addrs[0])
	}
}

// The Dockerfile builds FROM scratch images that run as a non-root user,
// without a syntax line (nothing can be pulled), and make image builds each
// of its stages.
func TestDockerfile(t *testing.T) {
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type stage struct {
		name, user string
	}
	var stages []stage
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "# syntax") {
			t.Errorf("line %d: no syntax directive (the frontend image cannot be pulled)", n)
		}
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(line, "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			if len(fields) != 4 || fields[1] != "scratch" || !strings.EqualFold(fields[2], "AS") {
				t.Errorf("line %d: %q: want FROM scratch AS <name>", n, line)
				continue
			}
			stages = append(stages, stage{name: fields[3]})
		case "USER":
			if len(stages) > 0 {
				stages[len(stages)-1].user = fields[1]
			}
		}
	}
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"meshtrace-cp", "meshtracectl"} {
		if !slices.ContainsFunc(stages, func(st stage) bool { return st.name == s }) {
			t.Errorf("no stage %s", s)
		}
	}
	for _, s := range stages {
		uid, _, _ := strings.Cut(s.user, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			t.Errorf("stage %s runs as %q: want a numeric non-root user", s.name, s.user)
		}
		if !bytes.Contains(mk, []byte("--target "+s.name)) {
			t.Errorf("make image does not build stage %s", s.name)
		}
	}
}
