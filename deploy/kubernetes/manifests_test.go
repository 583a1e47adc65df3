package kubernetes

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/airlock/airlock/broker/listen"
	"github.com/airlock/airlock/broker/result"
	"github.com/airlock/airlock/cmd/airlockd/server"
	"github.com/airlock/airlock/policies"
	"github.com/airlock/airlock/policies/policy"
)

// shutdownMargin is what the pod's termination grace period must leave
// after --drain-grace: up to 5s for the last calls (gracefulStopTimeout in
// cmd/airlockd/server), the jobs' teardown and containerd's stop.
const shutdownMargin = 20 * time.Second

// sandboxNodeLabel is the node label the DaemonSet selects; README.md tells
// operators to set it.
const sandboxNodeLabel = "airlock.dev/sandbox"

// wantSecurityContext is airlockd's container securityContext, exactly:
// README.md's "Privileges" says why each field is what it is.
var wantSecurityContext = corev1.SecurityContext{
	Privileged:               new(true),
	AllowPrivilegeEscalation: new(true),
	ReadOnlyRootFilesystem:   new(true),
	RunAsUser:                new(int64(0)),
	RunAsGroup:               new(int64(0)),
	RunAsNonRoot:             new(false),
	SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
	AppArmorProfile:          &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined},
}

// imageEntrypoint is airlockd in its image (airlockd-image.sh), which the
// DaemonSet's command names: the image test holds the image to it.
const imageEntrypoint = "/usr/local/bin/airlockd"

// manifests is one rendered kustomization, decoded.
type manifests struct {
	namespace  *corev1.Namespace
	daemonSet  *appsv1.DaemonSet
	service    *corev1.Service
	pdb        *policyv1.PodDisruptionBudget
	configMaps []*corev1.ConfigMap
}

// TestManifests_RenderDecodeStrictlyAndHoldThePolicy renders the base and
// every overlay as `kubectl apply -k` would, decodes each object strictly
// into its Kubernetes API type and checks it.
func TestManifests_RenderDecodeStrictlyAndHoldThePolicy(t *testing.T) {
	dirs := kustomizations(t)
	if len(dirs) < 2 {
		t.Fatalf("found %v: no overlay", dirs)
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			m, err := render(dir)
			if err != nil {
				t.Fatal(err)
			}
			checkManifests(t, m)
		})
	}
}

// kustomizations are base and every overlay.
func kustomizations(t *testing.T) []string {
	t.Helper()
	dirs := []string{"base"}
	overlays, err := os.ReadDir("overlays")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range overlays {
		if o.IsDir() {
			dirs = append(dirs, filepath.Join("overlays", o.Name()))
		}
	}
	return dirs
}

// TestKustomizations_DecodeStrictly: a misspelt field in a kustomization
// file is an error, not a setting silently dropped.
func TestKustomizations_DecodeStrictly(t *testing.T) {
	files, err := filepath.Glob("*/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, err := filepath.Glob("overlays/*/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, more...)
	if len(files) < 3 {
		t.Fatalf("found %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var k types.Kustomization
		if err := decodeStrict(data, &k); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestPolicies_AreTheShippedOnes: the base's profile files, from which the
// ConfigMap is generated, are byte for byte policies/*.yaml, and every
// shipped profile is there.
func TestPolicies_AreTheShippedOnes(t *testing.T) {
	shipped, err := fs.Glob(policies.FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	copies, err := filepath.Glob("base/policies/*")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range copies {
		names = append(names, filepath.Base(c))
	}
	if !slices.Equal(names, shipped) {
		t.Fatalf("base/policies holds %v, policies/ %v: copy them again (cp policies/*.yaml deploy/kubernetes/base/policies/)", names, shipped)
	}
	for _, name := range shipped {
		want, err := fs.ReadFile(policies.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("base/policies", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("base/policies/%s differs from policies/%s: copy it again", name, name)
		}
	}
}

// TestDecode_RefusesWhatAStrictDecoderMust proves the decoder the checks
// stand on fails: an unknown field, a duplicate key, an unknown kind or a
// known kind at another version is an error.
func TestDecode_RefusesWhatAStrictDecoderMust(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: None, hostNetwork: true}\n", `unknown field "hostNetwork"`},
		{"misspelt field", "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: a}\nspec: {maxUnavailabel: 1}\n", `unknown field "maxUnavailabel"`},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {a: x, a: y}\n", `key "a" already set`},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n", "kind v1/Pod"},
		{"other version", "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: a}\n", "kind policy/v1beta1/PodDisruptionBudget"},
		{"wrong type", "apiVersion: v1\nkind: Namespace\nmetadata: {name: [a]}\n", "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m manifests
			err := decodeObject([]byte(tt.doc), &m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("decodeObject = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// render builds dir with kustomize's own library, under the same load
// restrictions as `kubectl apply -k`, and decodes every object.
func render(dir string) (*manifests, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var m manifests
	for _, r := range rm.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		if err := decodeObject(data, &m); err != nil {
			return nil, fmt.Errorf("%s %s: %w", r.GetKind(), r.GetName(), err)
		}
	}
	return &m, nil
}

// decodeObject decodes one YAML document into the API type its apiVersion
// and kind name, strictly, and files it in m. Any other kind is an error:
// a kind nobody checks is a privilege nobody reviewed.
func decodeObject(data []byte, m *manifests) error {
	var tm struct{ APIVersion, Kind string }
	if err := yaml.Unmarshal(data, &tm); err != nil {
		return err
	}
	var err error
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/Namespace":
		m.namespace = new(corev1.Namespace)
		err = decodeStrict(data, m.namespace)
	case "apps/v1/DaemonSet":
		m.daemonSet = new(appsv1.DaemonSet)
		err = decodeStrict(data, m.daemonSet)
	case "v1/Service":
		m.service = new(corev1.Service)
		err = decodeStrict(data, m.service)
	case "policy/v1/PodDisruptionBudget":
		m.pdb = new(policyv1.PodDisruptionBudget)
		err = decodeStrict(data, m.pdb)
	case "v1/ConfigMap":
		cm := new(corev1.ConfigMap)
		err = decodeStrict(data, cm)
		m.configMaps = append(m.configMaps, cm)
	default:
		return fmt.Errorf("kind %s/%s: not one the manifests may hold (Namespace, DaemonSet, Service, PodDisruptionBudget, ConfigMap)", tm.APIVersion, tm.Kind)
	}
	return err
}

// decodeStrict decodes YAML into v with unknown fields and duplicate keys
// as errors, through JSON as the API server reads it.
func decodeStrict(data []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one document")
	}
	return nil
}

// checkManifests holds one rendered kustomization to README.md.
func checkManifests(t *testing.T, m *manifests) {
	if m.namespace == nil || m.daemonSet == nil || m.service == nil || m.pdb == nil || len(m.configMaps) != 1 {
		t.Fatalf("want one Namespace, DaemonSet, Service, PodDisruptionBudget and ConfigMap; got %v %v %v %v and %d ConfigMaps",
			m.namespace != nil, m.daemonSet != nil, m.service != nil, m.pdb != nil, len(m.configMaps))
	}
	ns := m.namespace.Name
	for _, meta := range []struct{ kind, namespace string }{
		{"DaemonSet", m.daemonSet.Namespace}, {"Service", m.service.Namespace},
		{"PodDisruptionBudget", m.pdb.Namespace}, {"ConfigMap", m.configMaps[0].Namespace},
	} {
		if meta.namespace != ns {
			t.Errorf("%s in namespace %q, want %q", meta.kind, meta.namespace, ns)
		}
	}
	if got := m.namespace.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("namespace pod-security enforce = %q, want privileged: the baseline level refuses airlockd's pod", got)
	}

	ds := m.daemonSet
	pod := ds.Spec.Template.Spec
	podLabels := labels.Set(ds.Spec.Template.Labels)
	checkPod(t, ds)
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 || len(pod.EphemeralContainers) != 0 {
		t.Fatalf("%d containers, %d init containers: want airlockd alone", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	checkContainer(t, c)
	o := checkFlags(t, c, pod)
	profiles := checkPolicies(t, m.configMaps[0], pod, c, o)
	if _, err := profiles.Get(o.DefaultProfile); err != nil {
		t.Errorf("--default-profile %s: %v", o.DefaultProfile, err)
	}
	for name := range o.Pools {
		if _, err := profiles.Get(name); err != nil {
			t.Errorf("--pool %s: %v", name, err)
		}
	}

	if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace < o.DrainGrace+shutdownMargin {
		t.Errorf("terminationGracePeriodSeconds %v, want at least --drain-grace %v + %v: the kubelet would kill airlockd mid-drain", grace, o.DrainGrace, shutdownMargin)
	}
	// The overall health service is NOT_SERVING for the whole drain: a
	// liveness probe that gave up sooner would kill airlockd mid-drain.
	if l := c.LivenessProbe; l != nil && time.Duration(l.PeriodSeconds*l.FailureThreshold)*time.Second <= time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second {
		t.Errorf("livenessProbe gives up after %ds, within terminationGracePeriodSeconds %d: it would kill a draining airlockd", l.PeriodSeconds*l.FailureThreshold, *pod.TerminationGracePeriodSeconds)
	}
	// Job-scoped calls (GetJob, Cancel, Approve) reach a job's node by the
	// address its responses name.
	if o.AdvertiseAddress == "" {
		t.Error("no --advertise-address: a balancing client could not send a job's GetJob, Cancel or Approve to its node")
	} else if host, p, err := net.SplitHostPort(o.AdvertiseAddress); err != nil || host == "" || p != strconv.Itoa(int(port(t, "--listen", o.Listen))) {
		t.Errorf("--advertise-address %q, want the pod's address and --listen's port", o.AdvertiseAddress)
	}
	healthPort := port(t, "--health-listen", o.HealthListen)
	for _, p := range []struct {
		name, service string
		probe         *corev1.Probe
	}{
		{"startupProbe", "", c.StartupProbe},
		{"livenessProbe", "", c.LivenessProbe},
		{"readinessProbe", "airlock.v1.Broker", c.ReadinessProbe},
	} {
		switch {
		case p.probe == nil:
			t.Errorf("no %s", p.name)
		case p.probe.GRPC == nil:
			t.Errorf("%s is not a gRPC health probe", p.name)
		case p.probe.GRPC.Port != healthPort:
			t.Errorf("%s on port %d, want --health-listen's %d", p.name, p.probe.GRPC.Port, healthPort)
		case ptrValue(p.probe.GRPC.Service) != p.service:
			t.Errorf("%s asks for service %q, want %q", p.name, ptrValue(p.probe.GRPC.Service), p.service)
		}
	}

	checkMetrics(t, ds.Spec.Template.Annotations, c, o)

	svc := m.service
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service clusterIP %q, want None: clients balance across the pods themselves", svc.Spec.ClusterIP)
	}
	if svc.Spec.PublishNotReadyAddresses {
		t.Error("Service publishes pods that are not ready: draining nodes would get new jobs")
	}
	if sel := labels.SelectorFromSet(svc.Spec.Selector); len(svc.Spec.Selector) == 0 || !sel.Matches(podLabels) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, podLabels)
	}
	listenPort := port(t, "--listen", o.Listen)
	if len(svc.Spec.Ports) != 1 || containerPort(t, c, svc.Spec.Ports[0].TargetPort) != listenPort {
		t.Errorf("Service ports %v, want one, to --listen's port %d", svc.Spec.Ports, listenPort)
	}

	pdb := m.pdb
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", pdb.Spec.MaxUnavailable)
	}
	if sel, err := metaSelector(pdb.Spec.Selector.MatchLabels); err != nil || !sel.Matches(podLabels) {
		t.Errorf("PodDisruptionBudget selector %v does not select the pods %v", pdb.Spec.Selector, podLabels)
	}
}

// checkPod checks the DaemonSet's pod: where it runs, what of the node it
// shares, and how it is replaced.
func checkPod(t *testing.T, ds *appsv1.DaemonSet) {
	pod := ds.Spec.Template.Spec
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("hostNetwork %v, hostPID %v, hostIPC %v: want none; the jobs' veths and the egress proxy live in the pod's own network namespace",
			pod.HostNetwork, pod.HostPID, pod.HostIPC)
	}
	if ptrValue(pod.ShareProcessNamespace) {
		t.Error("shareProcessNamespace: airlockd must be PID 1, so that its death ends every job in the pod")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false: airlockd never calls the API server, and a token is a credential on the node")
	}
	if sc := pod.SecurityContext; sc != nil && (sc.FSGroup != nil || len(sc.SupplementalGroups) > 0) {
		t.Error("pod securityContext sets fsGroup or supplementalGroups: Secret files would become group-readable, and airlockd refuses such a token file")
	}
	if pod.NodeSelector[sandboxNodeLabel] != "true" {
		t.Errorf("nodeSelector %v, want %s=true", pod.NodeSelector, sandboxNodeLabel)
	}
	if pod.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	if sel, err := metaSelector(ds.Spec.Selector.MatchLabels); err != nil || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("DaemonSet selector %v does not select its own pods", ds.Spec.Selector)
	}
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil || ru.MaxSurge == nil || ru.MaxSurge.IntValue() != 0 {
		t.Errorf("updateStrategy %+v, want RollingUpdate with maxSurge 0: two airlockd on one node would share one state dir", ds.Spec.UpdateStrategy)
	}
	for _, v := range pod.Volumes {
		if hp := v.HostPath; hp != nil && (hp.Path != "/var/lib/airlock" || ptrValue(hp.Type) != corev1.HostPathDirectoryOrCreate) {
			t.Errorf("volume %s: hostPath %s (%v); the node's state dir /var/lib/airlock (DirectoryOrCreate) is the only one", v.Name, hp.Path, ptrValue(hp.Type))
		}
	}
}

// checkContainer checks airlockd's container: its image, resources and
// securityContext.
func checkContainer(t *testing.T, c corev1.Container) {
	if c.Image == "" || strings.HasSuffix(c.Image, ":latest") || !strings.ContainsAny(c.Image, ":@") {
		t.Errorf("image %q: want a tag or digest, not latest", c.Image)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[r]
		lim, hasLim := c.Resources.Limits[r]
		switch {
		case !hasReq || !hasLim:
			t.Errorf("%s: request set %v, limit set %v; want both", r, hasReq, hasLim)
		case req.Cmp(lim) > 0:
			t.Errorf("%s: request %s over limit %s", r, req.String(), lim.String())
		}
	}
	if got := ptrValue(c.SecurityContext); !reflect.DeepEqual(got, wantSecurityContext) {
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(wantSecurityContext)
		t.Errorf("securityContext\n got %s\nwant %s\n(README.md's \"Privileges\" justifies each field; change both together)", gj, wj)
	}
	for _, vm := range c.VolumeMounts {
		if p := ptrValue(vm.MountPropagation); p != "" && p != corev1.MountPropagationNone {
			t.Errorf("volume mount %s: propagation %s; the jobs' mounts must stay in the pod's mount namespace", vm.Name, p)
		}
	}
}

// checkFlags parses the container's arguments with airlockd's own flag
// set, and checks what the flags ask of the pod.
func checkFlags(t *testing.T, c corev1.Container, pod corev1.PodSpec) server.Options {
	if !slices.Equal(c.Command, []string{imageEntrypoint}) {
		t.Errorf("command %v, want [%s] alone, the image's airlockd, its flags in args", c.Command, imageEntrypoint)
	}
	var o server.Options
	fset, _ := server.FlagSet("airlockd", flag.ContinueOnError, &o)
	var usage bytes.Buffer
	fset.SetOutput(&usage)
	args := expandArgs(t, c)
	if err := fset.Parse(args); err != nil {
		t.Fatalf("airlockd %v: %v", args, err)
	}
	if fset.NArg() != 0 {
		t.Errorf("airlockd takes no arguments; left over: %v", fset.Args())
	}
	if err := o.Validate(); err != nil {
		t.Errorf("airlockd %v: %v", args, err)
	}
	seen := map[string]bool{}
	for _, a := range c.Args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if seen[name] && name != "pool" {
			t.Errorf("--%s given twice: the last one wins, which a reader of the manifest does not expect", name)
		}
		seen[name] = true
	}
	// airlockd's bind rule for both TCP listeners, checked here so that
	// the manifests cannot ship a listener airlockd refuses at start.
	bind := listen.Config{AllowRemote: o.AllowRemote, TLSCert: o.TLSCert, TLSKey: o.TLSKey, TLSClientCA: o.TLSClientCA}
	for flagName, addr := range map[string]string{"--listen": o.Listen, "--metrics-listen": o.MetricsListen} {
		bind.Addr = addr
		if err := listen.Check(flagName, bind); err != nil {
			t.Error(err)
		}
	}

	// Every file or directory a flag names must come from a volume, not
	// the image; the secrets and the config read-only.
	files := map[string]string{
		"--token-file": o.TokenFile, "--tokens": o.TokensFile, "--tls-cert": o.TLSCert, "--tls-key": o.TLSKey,
		"--tls-client-ca": o.TLSClientCA, "--policy-dir": o.PolicyDir, "--upstream-ca": o.UpstreamCA,
	}
	for flagName, p := range files {
		if p == "" {
			continue
		}
		vm, v := mountOf(c, pod, p)
		switch {
		case vm == nil:
			t.Errorf("%s %s is on no volume", flagName, p)
		case !vm.ReadOnly:
			t.Errorf("%s %s: volume %s is mounted writable", flagName, p, vm.Name)
		case v.Secret == nil && v.ConfigMap == nil:
			t.Errorf("%s %s: volume %s is neither a Secret nor a ConfigMap", flagName, p, vm.Name)
		}
		// airlockd refuses a token file others can read; a private key
		// deserves the same.
		if v != nil && (flagName == "--token-file" || flagName == "--tls-key") && (v.Secret == nil || ptrValue(v.Secret.DefaultMode) != 0o400) {
			t.Errorf("%s %s: want a Secret volume of defaultMode 0400", flagName, p)
		}
	}
	if vm, v := mountOf(c, pod, o.StateDir); vm == nil || vm.ReadOnly || v.HostPath == nil {
		t.Errorf("--state-dir %s: want the node's state dir (hostPath), writable", o.StateDir)
	}
	// /run holds containerd's and runc's state and the jobs' network
	// namespaces (netns.Dir, /var/run/netns, and /var/run is /run); /tmp
	// is airlockd's scratch. The root file system is read-only.
	for _, dir := range []string{"/run", "/tmp"} {
		if vm, v := mountOf(c, pod, dir); vm == nil || vm.ReadOnly || v.EmptyDir == nil {
			t.Errorf("%s: want a writable emptyDir", dir)
		}
	}
	return o
}

// samplePodIP stands in for the pod's address (status.podIP) when the
// test expands the container's arguments as the kubelet does; it is
// parsed, never dialled.
const samplePodIP = "10.244.1.7"

// expandArgs is the container's arguments as the kubelet passes them:
// $(NAME) replaced by the container's env var NAME, $$ by $. Every
// reference must resolve (the kubelet would pass an unknown one through
// as it is, and airlockd would get a flag nobody meant), and an env var
// may be a literal or the pod's address only: secrets reach airlockd as
// files, never through its environment.
func expandArgs(t *testing.T, c corev1.Container) []string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			env[e.Name] = samplePodIP
		default:
			t.Errorf("env %s comes from %+v: want a literal or status.podIP", e.Name, *e.ValueFrom)
		}
	}
	if len(c.EnvFrom) != 0 {
		t.Errorf("envFrom %v: airlockd's environment is listed var by var", c.EnvFrom)
	}
	out := make([]string, 0, len(c.Args))
	for _, a := range c.Args {
		var b strings.Builder
		for i := 0; i < len(a); i++ {
			switch {
			case strings.HasPrefix(a[i:], "$$"):
				b.WriteByte('$')
				i++
			case strings.HasPrefix(a[i:], "$("):
				name, _, ok := strings.Cut(a[i+2:], ")")
				v, defined := env[name]
				if !ok || !defined {
					t.Errorf("argument %q: $(%s) names no env var of the container", a, name)
				}
				b.WriteString(v)
				i += len(name) + 2
			default:
				b.WriteByte(a[i])
			}
		}
		out = append(out, b.String())
	}
	return out
}

// checkMetrics holds the metrics to README.md's "Metrics": served on the
// pod's own address, over https, on the port the scrape annotations and
// a container port name.
func checkMetrics(t *testing.T, annotations map[string]string, c corev1.Container, o server.Options) {
	t.Helper()
	if o.MetricsListen == "" {
		t.Error("no --metrics-listen: Prometheus would have nothing to scrape")
		return
	}
	if host, _, _ := net.SplitHostPort(o.MetricsListen); host != samplePodIP {
		t.Errorf("--metrics-listen %s: want the pod's address, $(POD_IP) from status.podIP, not every interface", o.MetricsListen)
	}
	if o.TLSCert == "" || o.TLSKey == "" {
		t.Error("metrics without --tls-cert/--tls-key would be plaintext")
	}
	p := port(t, "--metrics-listen", o.MetricsListen)
	for key, want := range map[string]string{
		"prometheus.io/scrape": "true",
		"prometheus.io/port":   strconv.Itoa(int(p)),
		"prometheus.io/scheme": "https",
	} {
		if got := annotations[key]; got != want {
			t.Errorf("pod annotation %s = %q, want %q", key, got, want)
		}
	}
	if got := containerPort(t, c, intstr.FromString("metrics")); got != p {
		t.Errorf("container port metrics is %d, want --metrics-listen's %d", got, p)
	}
}

// checkPolicies loads the ConfigMap's profiles as airlockd would, and
// checks that they are the shipped ones and that the pod mounts them at
// --policy-dir.
func checkPolicies(t *testing.T, cm *corev1.ConfigMap, pod corev1.PodSpec, c corev1.Container, o server.Options) *policy.Set {
	vm, v := mountOf(c, pod, o.PolicyDir)
	if vm == nil || v.ConfigMap == nil || v.ConfigMap.Name != cm.Name || vm.MountPath != o.PolicyDir || vm.SubPath != "" {
		t.Errorf("--policy-dir %s is not the ConfigMap %s mounted whole", o.PolicyDir, cm.Name)
	}
	fsys := fstest.MapFS{}
	for name, body := range cm.Data {
		fsys[name] = &fstest.MapFile{Data: []byte(body), Mode: 0o444}
		shipped, err := fs.ReadFile(policies.FS, name)
		if err != nil || string(shipped) != body {
			t.Errorf("ConfigMap %s: %s is not the shipped policies/%s", cm.Name, name, name)
		}
	}
	if len(cm.BinaryData) != 0 {
		t.Errorf("ConfigMap %s has binaryData", cm.Name)
	}
	set, err := policy.Load(fsys, policy.WithDevMode(o.Dev), policy.WithSchemaCheck(result.CheckSchema))
	if err != nil {
		t.Fatalf("ConfigMap %s: %v", cm.Name, err)
	}
	shipped, _ := fs.Glob(policies.FS, "*.yaml")
	if len(cm.Data) != len(shipped) {
		t.Errorf("ConfigMap %s holds %d profiles, policies/ %d", cm.Name, len(cm.Data), len(shipped))
	}
	return set
}

// mountOf is the container's volume mount that holds p, the deepest one,
// and its volume; nil when p is on the image's root file system.
func mountOf(c corev1.Container, pod corev1.PodSpec, p string) (*corev1.VolumeMount, *corev1.Volume) {
	var best *corev1.VolumeMount
	for i, vm := range c.VolumeMounts {
		if (p == vm.MountPath || strings.HasPrefix(p, strings.TrimSuffix(vm.MountPath, "/")+"/")) && (best == nil || len(vm.MountPath) > len(best.MountPath)) {
			best = &c.VolumeMounts[i]
		}
	}
	if best == nil {
		return nil, nil
	}
	for i, v := range pod.Volumes {
		if v.Name == best.Name {
			return best, &pod.Volumes[i]
		}
	}
	return nil, nil
}

// port is the port of a host:port flag.
func port(t *testing.T, flagName, hostPort string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatalf("%s %q: %v", flagName, hostPort, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		t.Fatalf("%s %q: %v", flagName, hostPort, err)
	}
	return int32(n)
}

// containerPort resolves a Service's targetPort against the container.
func containerPort(t *testing.T, c corev1.Container, target intstr.IntOrString) int32 {
	t.Helper()
	if target.Type == intstr.Int {
		return target.IntVal
	}
	for _, p := range c.Ports {
		if p.Name == target.StrVal {
			return p.ContainerPort
		}
	}
	t.Errorf("targetPort %q names no container port", target.StrVal)
	return 0
}

// metaSelector is a label selector from matchLabels; an empty one would
// select every pod in the namespace.
func metaSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return nil, errors.New("empty selector")
	}
	return labels.SelectorFromSet(m), nil
}

// ptrValue is *p, or the zero value for nil.
func ptrValue[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
