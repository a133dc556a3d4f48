package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadflow/leadflow/internal/config"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// Files outside deploy/ that name leadflow's variables too.
const (
	dockerfile = "../Dockerfile"
	asyncAPI   = "../schemas/asyncapi.yaml"
)

// Names of the Kubernetes objects the manifests tie together.
const (
	namespace     = "leadflow"
	appName       = "leadflow"
	configMapName = "leadflow-config"
	secretName    = "leadflow-secrets"
)

// bundle is every manifest under deploy/, parsed.
type bundle struct {
	k8s     []manifest
	compose map[string]any
	// config and secret are the leadflow ConfigMap's data and the Secret's
	// stringData.
	config map[string]string
	secret map[string]string
}

// manifest is one document of a kubernetes/*.yaml file.
type manifest struct {
	file string
	obj  map[string]any
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{}
	files, err := filepath.Glob("kubernetes/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		for _, doc := range yamlDocs(t, f) {
			obj, ok := doc.(map[string]any)
			require.True(t, ok, "%s: every document is a Kubernetes object", f)
			b.k8s = append(b.k8s, manifest{file: f, obj: obj})
		}
	}
	compose := yamlDocs(t, "compose.yaml")
	require.Len(t, compose, 1)
	b.compose = compose[0].(map[string]any)
	b.config = stringMap(t, dig(t, b.find(t, "ConfigMap", configMapName), "data"))
	b.secret = stringMap(t, dig(t, b.find(t, "Secret", secretName), "stringData"))
	return b
}

// find returns the one object of kind named name.
func (b *bundle) find(t *testing.T, kind, name string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, m := range b.k8s {
		if m.obj["kind"] == kind && dig(t, m.obj, "metadata", "name") == name {
			found = append(found, m.obj)
		}
	}
	require.Len(t, found, 1, "%s %s", kind, name)
	return found[0]
}

// yamlDocs parses every document of a YAML file, skipping empty ones.
func yamlDocs(t *testing.T, path string) []any {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var docs []any
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "%s: not valid YAML", path)
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	require.NotEmpty(t, docs, "%s: no YAML document", path)
	return docs
}

// dig follows map keys (string) and list indexes (int) from v, failing the
// test when one is missing.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for i, step := range path {
		switch k := step.(type) {
		case string:
			m, ok := v.(map[string]any)
			require.True(t, ok, "%v: not a mapping", path[:i])
			v, ok = m[k]
			require.True(t, ok, "%v: missing", path[:i+1])
		case int:
			l, ok := v.([]any)
			require.True(t, ok, "%v: not a list", path[:i])
			require.Less(t, k, len(l), "%v: missing", path[:i+1])
			v = l[k]
		}
	}
	return v
}

func stringMap(t *testing.T, v any) map[string]string {
	t.Helper()
	m, ok := v.(map[string]any)
	require.True(t, ok, "not a mapping: %v", v)
	out := make(map[string]string, len(m))
	for k, val := range m {
		s, ok := val.(string)
		require.True(t, ok, "%s: a Kubernetes string value must be quoted, not %T", k, val)
		out[k] = s
	}
	return out
}

// envVars is every variable config.Config reads, by its full name.
func envVars(t *testing.T) map[string]bool {
	t.Helper()
	typ := reflect.TypeFor[config.Config]()
	vars := map[string]bool{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag := f.Tag.Get("envconfig")
		require.NotEmpty(t, tag, "config.Config.%s has no envconfig tag", f.Name)
		vars["LEADFLOW_"+tag] = true
	}
	return vars
}

// configFrom is the configuration leadflow reads when the environment holds
// exactly env: each field from its variable, else from its default, parsed
// as envconfig parses it. The process environment is left alone.
func configFrom(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	var c config.Config
	v := reflect.ValueOf(&c).Elem()
	for _, f := range reflect.VisibleFields(v.Type()) {
		name := "LEADFLOW_" + f.Tag.Get("envconfig")
		s, ok := env[name]
		if !ok {
			s = f.Tag.Get("default")
		}
		field := v.FieldByIndex(f.Index)
		switch {
		case f.Type == reflect.TypeFor[time.Duration]():
			d, err := time.ParseDuration(s)
			require.NoError(t, err, name)
			field.SetInt(int64(d))
		case f.Type.Kind() == reflect.String:
			field.SetString(s)
		case f.Type.Kind() == reflect.Bool:
			v, err := strconv.ParseBool(s)
			require.NoError(t, err, name)
			field.SetBool(v)
		case f.Type.Kind() == reflect.Int || f.Type.Kind() == reflect.Int32:
			n, err := strconv.ParseInt(s, 10, f.Type.Bits())
			require.NoError(t, err, name)
			field.SetInt(n)
		default:
			t.Fatalf("%s: no parser for %s", name, f.Type)
		}
	}
	return c
}

var envVarRef = regexp.MustCompile(`\bLEADFLOW_[A-Z0-9_]+`)

func TestEveryFileParses(t *testing.T) {
	t.Parallel()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return err
	})
	require.NoError(t, err)
	require.Contains(t, files, "compose.yaml")
	for _, f := range append(files, asyncAPI) {
		yamlDocs(t, f)
	}

	b := setup(t)
	for _, m := range b.k8s {
		require.NotEmpty(t, m.obj["apiVersion"], "%s: apiVersion", m.file)
		kind, _ := m.obj["kind"].(string)
		require.NotEmpty(t, kind, "%s: kind", m.file)
		name := dig(t, m.obj, "metadata", "name")
		if kind == "Namespace" {
			require.Equal(t, namespace, name)
			continue
		}
		require.Equal(t, namespace, dig(t, m.obj, "metadata", "namespace"), "%s: %s %s", m.file, kind, name)
	}
}

func TestEveryVariableIsOneLeadflowReads(t *testing.T) {
	t.Parallel()
	vars := envVars(t)
	files, err := filepath.Glob("kubernetes/*.yaml")
	require.NoError(t, err)
	files = append(files, "compose.yaml", "README.md", dockerfile, asyncAPI)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, name := range envVarRef.FindAllString(string(raw), -1) {
			require.True(t, vars[name], "%s names %s, which leadflow does not read", f, name)
		}
	}

	b := setup(t)
	for name := range b.config {
		require.True(t, vars[name], "ConfigMap key %s", name)
	}
	for name := range b.secret {
		require.True(t, vars[name], "Secret key %s", name)
	}
	require.NotContains(t, b.config, "LEADFLOW_DATABASE_URL", "the database URL carries a password")
	require.NotContains(t, b.config, "LEADFLOW_NATS_URL", "the NATS URL carries a password")
	require.Contains(t, b.secret, "LEADFLOW_DATABASE_URL")
	require.Contains(t, b.secret, "LEADFLOW_NATS_URL")
}

func TestKubernetesConfigurationIsValid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	env := map[string]string{}
	for k, v := range b.config {
		env[k] = v
	}
	for k, v := range b.secret {
		env[k] = v
	}
	cfg := configFrom(t, env)
	require.NoError(t, cfg.Validate())
	require.Equal(t, 3, cfg.Replicas, "streams are R3 on the three-server cluster")
	require.Equal(t, "0.0.0.0:8080", cfg.HTTPAddr, "probes reach the pod from outside its loopback")
	require.Empty(t, cfg.SubjectPrefix, "the NATS permissions name unprefixed subjects")
}

// onlyContainer is the one container of a pod template.
func onlyContainer(t *testing.T, obj map[string]any) map[string]any {
	t.Helper()
	containers := dig(t, obj, "spec", "template", "spec", "containers").([]any)
	require.Len(t, containers, 1)
	return containers[0].(map[string]any)
}

func requireEnvFromConfig(t *testing.T, c map[string]any) {
	t.Helper()
	var refs []string
	for _, e := range dig(t, c, "envFrom").([]any) {
		e := e.(map[string]any)
		switch {
		case e["configMapRef"] != nil:
			refs = append(refs, "ConfigMap/"+dig(t, e, "configMapRef", "name").(string))
		case e["secretRef"] != nil:
			refs = append(refs, "Secret/"+dig(t, e, "secretRef", "name").(string))
		}
	}
	require.ElementsMatch(t, []string{"ConfigMap/" + configMapName, "Secret/" + secretName}, refs)
}

func requireLockedDown(t *testing.T, obj map[string]any) {
	t.Helper()
	require.Equal(t, true, dig(t, obj, "spec", "template", "spec", "securityContext", "runAsNonRoot"))
	c := onlyContainer(t, obj)
	require.Equal(t, true, dig(t, c, "securityContext", "readOnlyRootFilesystem"))
	require.Equal(t, false, dig(t, c, "securityContext", "allowPrivilegeEscalation"))
	for _, kind := range []string{"requests", "limits"} {
		for _, res := range []string{"cpu", "memory"} {
			require.NotEmpty(t, dig(t, c, "resources", kind, res), "resources.%s.%s", kind, res)
		}
	}
}

func TestDeployment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := b.find(t, "Deployment", appName)
	require.Equal(t, 2, dig(t, d, "spec", "replicas"))
	requireLockedDown(t, d)

	c := onlyContainer(t, d)
	require.Equal(t, []any{"serve"}, c["args"])
	requireEnvFromConfig(t, c)

	ports := map[string]int{}
	for _, p := range dig(t, c, "ports").([]any) {
		p := p.(map[string]any)
		ports[p["name"].(string)] = p["containerPort"].(int)
	}
	_, httpPort, _ := strings.Cut(b.config["LEADFLOW_HTTP_ADDR"], ":")
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		require.Equal(t, path, dig(t, c, probe, "httpGet", "path"), probe)
		port := dig(t, c, probe, "httpGet", "port")
		if name, ok := port.(string); ok {
			port = ports[name]
		}
		require.Equal(t, httpPort, strconv.Itoa(port.(int)), "%s probes LEADFLOW_HTTP_ADDR's port", probe)
	}

	ackWait, err := time.ParseDuration(b.config["LEADFLOW_ACK_WAIT"])
	require.NoError(t, err)
	grace := time.Duration(dig(t, d, "spec", "template", "spec", "terminationGracePeriodSeconds").(int)) * time.Second
	require.Greater(t, grace, ackWait, "shutdown finishes within LEADFLOW_ACK_WAIT; the kubelet must wait longer")

	labels := dig(t, d, "spec", "template", "metadata", "labels").(map[string]any)
	for k, v := range dig(t, d, "spec", "selector", "matchLabels").(map[string]any) {
		require.Equal(t, v, labels[k], "the Deployment's selector matches its pods")
	}
}

func TestMigrateJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	j := b.find(t, "Job", "leadflow-migrate")
	requireLockedDown(t, j)
	c := onlyContainer(t, j)
	require.Equal(t, []any{"migrate"}, c["args"])
	requireEnvFromConfig(t, c)
	require.Equal(t, onlyContainer(t, b.find(t, "Deployment", appName))["image"], c["image"])
}

// selects reports whether a matchLabels selector selects pods labelled so.
func selects(selector, labels map[string]any) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

func TestPodDisruptionBudgetSelectsTheDeployment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pdb := b.find(t, "PodDisruptionBudget", appName)
	require.Equal(t, 1, dig(t, pdb, "spec", "minAvailable"))
	selector := dig(t, pdb, "spec", "selector", "matchLabels").(map[string]any)

	d := b.find(t, "Deployment", appName)
	require.True(t, selects(selector, dig(t, d, "spec", "template", "metadata", "labels").(map[string]any)))
	require.Equal(t, dig(t, d, "spec", "selector", "matchLabels"), selector)
	job := b.find(t, "Job", "leadflow-migrate")
	require.False(t, selects(selector, dig(t, job, "spec", "template", "metadata", "labels").(map[string]any)),
		"the migration's pod is not a serving replica")
}

func TestScaledObject(t *testing.T) {
	t.Parallel()
	b := setup(t)
	so := b.find(t, "ScaledObject", appName)
	require.Equal(t, "keda.sh/v1alpha1", so["apiVersion"])
	require.Equal(t, "Deployment", dig(t, so, "spec", "scaleTargetRef", "kind"))
	require.Equal(t, appName, dig(t, so, "spec", "scaleTargetRef", "name"))
	minReplicas := dig(t, so, "spec", "minReplicaCount").(int)
	require.Greater(t, minReplicas, dig(t, b.find(t, "PodDisruptionBudget", appName), "spec", "minAvailable").(int))
	require.GreaterOrEqual(t, dig(t, so, "spec", "maxReplicaCount").(int), minReplicas)

	triggers := dig(t, so, "spec", "triggers").([]any)
	require.Len(t, triggers, 1)
	require.Equal(t, "nats-jetstream", dig(t, triggers[0], "type"))
	meta := stringMap(t, dig(t, triggers[0], "metadata"))
	require.Equal(t, "LEAD_REQUESTS", meta["stream"])
	require.Equal(t, "leadflow", meta["consumer"])
	require.Equal(t, b.config["LEADFLOW_REQUESTS_STREAM"], meta["stream"])
	require.Equal(t, b.config["LEADFLOW_CONSUMER"], meta["consumer"])
	require.Equal(t, natsAccount, meta["account"])
	lag, err := strconv.Atoi(meta["lagThreshold"])
	require.NoError(t, err)
	require.Positive(t, lag)

	// KEDA asks the consumer's leader at <server_name>.<endpoint>: the
	// endpoint is the headless Service, whose pods are the server names.
	host, port, ok := strings.Cut(meta["natsServerMonitoringEndpoint"], ":")
	require.True(t, ok)
	require.Equal(t, "8222", port)
	svc := b.find(t, "Service", "nats")
	require.Equal(t, "None", dig(t, svc, "spec", "clusterIP"))
	require.Equal(t, "nats."+namespace+".svc.cluster.local", host)
	require.Equal(t, "nats", dig(t, b.find(t, "StatefulSet", "nats"), "spec", "serviceName"))
}

func TestCompose(t *testing.T) {
	t.Parallel()
	b := setup(t)
	vars := envVars(t)
	services := dig(t, b.compose, "services").(map[string]any)
	require.ElementsMatch(t, []string{"nats", "postgres", "migrate", "leadflow-1", "leadflow-2"}, slices.Collect(maps.Keys(services)))

	natsCmd := dig(t, services, "nats", "command").([]any)
	require.Contains(t, natsCmd, "-js")
	require.Contains(t, natsCmd, "-sd")
	require.NotEmpty(t, dig(t, services, "nats", "volumes"))
	require.NotEmpty(t, dig(t, services, "postgres", "healthcheck", "test"))

	require.Equal(t, []any{"migrate"}, dig(t, services, "migrate", "command"))
	require.Equal(t, "service_healthy", dig(t, services, "migrate", "depends_on", "postgres", "condition"))
	for _, name := range []string{"migrate", "leadflow-1", "leadflow-2"} {
		env := stringMap(t, dig(t, services, name, "environment"))
		for _, v := range []string{"LEADFLOW_DATABASE_URL", "LEADFLOW_NATS_URL", "LEADFLOW_HTTP_ADDR", "LEADFLOW_WORKERS"} {
			require.NotEmpty(t, env[v], "%s: %s", name, v)
		}
		for k := range env {
			require.True(t, vars[k], "%s: %s", name, k)
		}
		require.NoError(t, func() error { c := configFrom(t, env); return c.Validate() }(), name)
		require.Equal(t, "leadflow:latest", dig(t, services, name, "image"))
	}
	for _, name := range []string{"leadflow-1", "leadflow-2"} {
		require.Equal(t, []any{"serve"}, dig(t, services, name, "command"))
		require.Equal(t, "service_completed_successfully", dig(t, services, name, "depends_on", "migrate", "condition"))
	}
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string
	args string
}

func dockerInstructions(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open(dockerfile)
	require.NoError(t, err)
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	require.NoError(t, sc.Err())
	return out
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	mod, err := os.ReadFile("../go.mod")
	require.NoError(t, err)
	goLine := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(mod))
	require.NotNil(t, goLine)

	var froms, runs []string
	last := map[string]string{}
	for _, in := range dockerInstructions(t) {
		switch in.cmd {
		case "FROM":
			froms = append(froms, in.args)
		case "RUN":
			runs = append(runs, in.args)
		}
		last[in.cmd] = in.args
	}
	require.Len(t, froms, 2)
	require.Equal(t, "golang:"+goLine[1]+"."+goLine[2]+" AS build", froms[0], "the builder's Go is go.mod's")
	require.Equal(t, "gcr.io/distroless/static-debian12:nonroot", froms[1])

	build := runs[len(runs)-1]
	for _, want := range []string{"CGO_ENABLED=0", "go build", "-trimpath", `-ldflags "-s -w"`, "./cmd/leadflow"} {
		require.Contains(t, build, want)
	}
	_, err = os.Stat("../cmd/leadflow/main.go")
	require.NoError(t, err)

	require.Equal(t, `["/leadflow"]`, last["ENTRYPOINT"])
	require.Equal(t, `["serve"]`, last["CMD"])
	require.Equal(t, "8080", last["EXPOSE"])
	require.Equal(t, "LEADFLOW_HTTP_ADDR=0.0.0.0:8080", last["ENV"])
	require.Equal(t, "nonroot:nonroot", last["USER"])
}
