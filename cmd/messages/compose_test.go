package main

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The deployment files live at the repository root; these tests check that
// compose.yaml and the Dockerfile agree with each other and with the server's
// configuration, since no container engine runs in the test environment.

const (
	composeServerService = "messages"
	composeDBService     = "postgres"
)

// composeFile is the part of a Compose file the wiring checks read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image           string         `yaml:"image"`
	Build           *composeBuild  `yaml:"build"`
	Environment     composeEnv     `yaml:"environment"`
	Ports           []composePort  `yaml:"ports"`
	DependsOn       composeDepends `yaml:"depends_on"`
	Healthcheck     *composeHealth `yaml:"healthcheck"`
	Volumes         []composeMount `yaml:"volumes"`
	Restart         string         `yaml:"restart"`
	StopGracePeriod string         `yaml:"stop_grace_period"`
}

// composeBuild accepts both `build: dir` and `build: {context:, dockerfile:}`.
type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func (b *composeBuild) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	type plain composeBuild
	return n.Decode((*plain)(b))
}

// composeEnv accepts both the map form and the list form ("KEY=value").
type composeEnv map[string]string

func (e *composeEnv) UnmarshalYAML(n *yaml.Node) error {
	out := composeEnv{}
	switch n.Kind {
	case yaml.MappingNode:
		var m map[string]string
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			out[k] = v
		}
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
	default:
		return fmt.Errorf("environment: unexpected YAML node kind %v", n.Kind)
	}
	*e = out
	return nil
}

// composePort accepts the short form ("3000:3000", "127.0.0.1:3000:3000/tcp")
// and the long form ({target:, published:}).
type composePort struct {
	HostIP    string // "" publishes on every interface
	Published string
	Target    string
}

func (p *composePort) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		spec, _, _ := strings.Cut(n.Value, "/")
		parts := strings.Split(spec, ":")
		p.Target = parts[len(parts)-1]
		if len(parts) >= 2 {
			p.Published = parts[len(parts)-2]
		}
		if len(parts) >= 3 {
			p.HostIP = strings.Join(parts[:len(parts)-2], ":")
		}
		return nil
	}
	var long struct {
		HostIP    string `yaml:"host_ip"`
		Target    string `yaml:"target"`
		Published string `yaml:"published"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	p.HostIP, p.Target, p.Published = long.HostIP, long.Target, long.Published
	return nil
}

// composeDepends accepts the list form (no condition) and the map form.
type composeDepends map[string]string

func (d *composeDepends) UnmarshalYAML(n *yaml.Node) error {
	out := composeDepends{}
	switch n.Kind {
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, s := range l {
			out[s] = ""
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			out[k] = v.Condition
		}
	default:
		return fmt.Errorf("depends_on: unexpected YAML node kind %v", n.Kind)
	}
	*d = out
	return nil
}

// composeHealth keeps the healthcheck test as one command line string.
type composeHealth struct {
	Test string
}

func (h *composeHealth) UnmarshalYAML(n *yaml.Node) error {
	var raw struct {
		Test yaml.Node `yaml:"test"`
	}
	if err := n.Decode(&raw); err != nil {
		return err
	}
	switch raw.Test.Kind {
	case yaml.ScalarNode:
		h.Test = raw.Test.Value
	case yaml.SequenceNode:
		var l []string
		if err := raw.Test.Decode(&l); err != nil {
			return err
		}
		h.Test = strings.Join(l, " ")
	}
	return nil
}

// composeMount accepts "source:target[:mode]" and {source:, target:}.
type composeMount struct {
	Source string
	Target string
}

func (m *composeMount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		if len(parts) == 1 {
			m.Target = parts[0]
			return nil
		}
		m.Source, m.Target = parts[0], parts[1]
		return nil
	}
	var long struct {
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	m.Source, m.Target = long.Source, long.Target
	return nil
}

// composeRepoRoot walks up from the package directory to the directory holding go.mod.
func composeRepoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod found above the test's directory")
		}
		dir = parent
	}
}

func loadCompose(t *testing.T, root string) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "compose.yaml"))
	if err != nil {
		t.Fatalf("read compose.yaml: %v", err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("parse compose.yaml: %v", err)
	}
	return c
}

// dockerfileInstr is one Dockerfile instruction with continuations joined.
type dockerfileInstr struct {
	Line  int    // 1-based line where the instruction starts
	Cmd   string // upper-cased instruction keyword
	Args  string
	Stage int // index of the FROM stage the instruction belongs to
}

func composeParseDockerfile(t *testing.T, path string) []dockerfileInstr {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read Dockerfile: %v", err)
	}
	var (
		out     []dockerfileInstr
		cur     strings.Builder
		start   int
		stage   = -1
		lineNum int
	)
	flush := func() {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return
		}
		cmd, args, _ := strings.Cut(text, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, dockerfileInstr{Line: start, Cmd: cmd, Args: strings.TrimSpace(args), Stage: stage})
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		lineNum++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue // blank lines, comments and parser directives, also inside continuations
		}
		if cur.Len() == 0 {
			start = lineNum
		}
		if body, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scan Dockerfile: %v", err)
	}
	flush()
	return out
}

func TestComposeWiring(t *testing.T) {
	root := composeRepoRoot(t)
	c := loadCompose(t, root)

	server, ok := c.Services[composeServerService]
	if !ok {
		t.Fatalf("compose.yaml: no %q service (services: %v)", composeServerService, composeServiceNames(c))
	}
	db, ok := c.Services[composeDBService]
	if !ok {
		t.Fatalf("compose.yaml: no %q service (services: %v)", composeDBService, composeServiceNames(c))
	}

	t.Run("postgres", func(t *testing.T) {
		if !strings.HasPrefix(db.Image, "postgres:") {
			t.Errorf("postgres service: image = %q, want an official postgres:<version> image", db.Image)
		}
		if db.Environment["POSTGRES_PASSWORD"] == "" {
			t.Errorf("postgres service: POSTGRES_PASSWORD is not set; the image refuses to initialise without it")
		}
		if db.Environment["POSTGRES_DB"] == "" {
			t.Errorf("postgres service: POSTGRES_DB is not set")
		}
		if db.Healthcheck == nil || db.Healthcheck.Test == "" {
			t.Fatalf("postgres service: no healthcheck; the server's depends_on condition needs one")
		}
		if !strings.Contains(db.Healthcheck.Test, "pg_isready") {
			t.Errorf("postgres service: healthcheck test %q does not use pg_isready", db.Healthcheck.Test)
		}
		if !composeHasNamedVolume(db.Volumes, c.Volumes) {
			t.Errorf("postgres service: data is not on a named volume declared under top-level volumes: (mounts %v, declared %v)", db.Volumes, c.Volumes)
		}
	})

	t.Run("server", func(t *testing.T) {
		if server.Build == nil {
			t.Fatalf("messages service: no build section; it must be built from the Dockerfile")
		}
		if ctx := filepath.Clean(server.Build.Context); ctx != "." {
			t.Errorf("messages service: build context = %q, want \".\" (the repository root)", server.Build.Context)
		}
		if df := server.Build.Dockerfile; df != "" && df != "Dockerfile" {
			t.Errorf("messages service: build dockerfile = %q, want Dockerfile", df)
		}
		if server.DependsOn[composeDBService] != "service_healthy" {
			t.Errorf("messages service: depends_on %s condition = %q, want service_healthy (depends_on: %v)",
				composeDBService, server.DependsOn[composeDBService], server.DependsOn)
		}
		if r, _, _ := strings.Cut(server.Restart, ":"); !slices.Contains([]string{"always", "on-failure", "unless-stopped"}, r) {
			t.Errorf("messages service: restart = %q, want always, on-failure or unless-stopped", server.Restart)
		}
		grace, err := time.ParseDuration(server.StopGracePeriod)
		if err != nil || grace < 10*time.Second {
			t.Errorf("messages service: stop_grace_period = %q, want at least 10s so buffered messages are flushed on stop", server.StopGracePeriod)
		}
	})

	t.Run("listen address and published port", func(t *testing.T) {
		addr, ok := server.Environment["LISTEN_ADDR"]
		if !ok {
			t.Fatalf("messages service: LISTEN_ADDR is not set (environment: %v)", server.Environment)
		}
		_, listenPort, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("messages service: LISTEN_ADDR = %q is not host:port: %v", addr, err)
		}
		var targets []string
		for _, p := range server.Ports {
			targets = append(targets, p.Target)
			if p.Target == listenPort && p.Published == "3000" {
				return
			}
		}
		t.Errorf("messages service: no port publishes 3000 to the container's LISTEN_ADDR port %s (container ports: %v)", listenPort, targets)
	})

	t.Run("database url", func(t *testing.T) {
		raw, ok := server.Environment["DATABASE_URL"]
		if !ok {
			t.Fatalf("messages service: DATABASE_URL is not set (environment: %v)", server.Environment)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("messages service: DATABASE_URL %q does not parse: %v", raw, err)
		}
		if u.Scheme != "postgres" && u.Scheme != "postgresql" {
			t.Errorf("DATABASE_URL scheme = %q, want postgres", u.Scheme)
		}
		if u.Hostname() != composeDBService {
			t.Errorf("DATABASE_URL host = %q, want the postgres service name %q", u.Hostname(), composeDBService)
		}
		if port := u.Port(); port != "" && port != "5432" {
			t.Errorf("DATABASE_URL port = %q, want 5432 (the postgres container's port)", port)
		}
		wantUser := cmp.Or(db.Environment["POSTGRES_USER"], "postgres")
		if got := u.User.Username(); got != wantUser {
			t.Errorf("DATABASE_URL user = %q, want %q as the postgres service defines", got, wantUser)
		}
		if got, _ := u.User.Password(); got != db.Environment["POSTGRES_PASSWORD"] {
			t.Errorf("DATABASE_URL password = %q, want the postgres service's POSTGRES_PASSWORD %q", got, db.Environment["POSTGRES_PASSWORD"])
		}
		wantDB := cmp.Or(db.Environment["POSTGRES_DB"], wantUser)
		if got := strings.TrimPrefix(u.Path, "/"); got != wantDB {
			t.Errorf("DATABASE_URL database = %q, want the postgres service's POSTGRES_DB %q", got, wantDB)
		}
		if db.Healthcheck != nil && strings.Contains(db.Healthcheck.Test, " -d ") &&
			!strings.Contains(db.Healthcheck.Test, " -d "+wantDB) {
			t.Errorf("postgres healthcheck %q checks a different database than %q", db.Healthcheck.Test, wantDB)
		}
	})

	t.Run("volumes declared", func(t *testing.T) {
		for name, svc := range c.Services {
			for _, m := range svc.Volumes {
				if composeIsNamedVolume(m.Source) {
					if _, ok := c.Volumes[m.Source]; !ok {
						t.Errorf("service %s mounts named volume %q, which is not declared under top-level volumes:", name, m.Source)
					}
				}
			}
		}
	})
}

func TestDockerfile(t *testing.T) {
	root := composeRepoRoot(t)
	c := loadCompose(t, root)
	server := c.Services[composeServerService]
	df := "Dockerfile"
	if server.Build != nil && server.Build.Dockerfile != "" {
		df = server.Build.Dockerfile
	}
	instrs := composeParseDockerfile(t, filepath.Join(root, df))

	var froms []dockerfileInstr
	buildStage := -1
	for _, in := range instrs {
		if in.Cmd != "FROM" {
			continue
		}
		froms = append(froms, in)
		f := strings.Fields(in.Args)
		if len(f) >= 3 && strings.EqualFold(f[len(f)-2], "AS") && f[len(f)-1] == "build" {
			buildStage = in.Stage
		}
	}
	if buildStage < 0 {
		t.Fatalf("%s: no build stage (FROM <image> AS build); FROM lines: %v", df, froms)
	}
	if len(froms) < 2 {
		t.Fatalf("%s: %d FROM line(s), want a multi-stage build with a separate runtime stage", df, len(froms))
	}
	final := froms[len(froms)-1].Stage
	if final == buildStage {
		t.Fatalf("%s: the build stage is the last stage; the image would ship the toolchain", df)
	}

	var (
		built, copied, entrypoint bool
		exposed                   []string
		user                      string
	)
	for _, in := range instrs {
		switch {
		case in.Stage == buildStage && in.Cmd == "RUN" &&
			strings.Contains(in.Args, "go build") && strings.Contains(in.Args, "./cmd/messages"):
			built = true
		case in.Stage == final && in.Cmd == "COPY" && strings.Contains(in.Args, "--from=build"):
			copied = true
		case in.Stage == final && in.Cmd == "EXPOSE":
			for _, p := range strings.Fields(in.Args) {
				port, _, _ := strings.Cut(p, "/")
				exposed = append(exposed, port)
			}
		case in.Stage == final && in.Cmd == "USER":
			user = in.Args
		case in.Stage == final && in.Cmd == "ENTRYPOINT":
			entrypoint = true
		}
	}
	if !built {
		t.Errorf("%s: the build stage has no RUN go build ... ./cmd/messages", df)
	}
	if !copied {
		t.Errorf("%s: the runtime stage copies nothing from the build stage (COPY --from=build)", df)
	}
	if !entrypoint {
		t.Errorf("%s: the runtime stage has no ENTRYPOINT", df)
	}
	name, _, _ := strings.Cut(user, ":")
	if name == "" || name == "root" || name == "0" {
		t.Errorf("%s: the runtime stage runs as %q, want a non-root USER", df, user)
	}

	// The port the image exposes is the one compose publishes and the
	// server listens on.
	if addr, ok := server.Environment["LISTEN_ADDR"]; ok {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("LISTEN_ADDR = %q is not host:port: %v", addr, err)
		}
		if !slices.Contains(exposed, port) {
			t.Errorf("%s: EXPOSE %v does not include the server's port %s", df, exposed, port)
		}
	}
	for _, p := range server.Ports {
		if !slices.Contains(exposed, p.Target) {
			t.Errorf("%s: EXPOSE %v does not include compose's container port %s", df, exposed, p.Target)
		}
	}
	if len(exposed) == 0 {
		t.Errorf("%s: the runtime stage EXPOSEs no port", df)
	}
	for _, p := range exposed {
		if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			t.Errorf("%s: EXPOSE %q is not a port number", df, p)
		}
	}
}

// composeInterpolate resolves ${VAR}, ${VAR:-default} and ${VAR-default}
// in a compose value as Compose does, with shell as the user's environment.
func composeInterpolate(t *testing.T, v string, shell map[string]string) string {
	t.Helper()
	var b strings.Builder
	for {
		i := strings.Index(v, "${")
		if i < 0 {
			return b.String() + v
		}
		end := strings.IndexByte(v[i:], '}')
		if end < 0 {
			t.Fatalf("compose value %q: unclosed ${", v)
		}
		expr := v[i+2 : i+end]
		b.WriteString(v[:i])
		name, def, hasDef := strings.Cut(expr, ":-")
		val, set := shell[name]
		switch {
		case hasDef && val == "":
			val = def
		case !hasDef && !set:
			if n, d, ok := strings.Cut(expr, "-"); ok {
				val, set = shell[n]
				if !set {
					val = d
				}
			}
		}
		b.WriteString(val)
		v = v[i+end+1:]
	}
}

// TestComposeServerStarts checks that the server's configuration as the
// Dockerfile and compose.yaml set it passes the server's own start-up
// checks, with and without a JWT_SECRET in the user's environment, and that
// an open server is published on loopback only.
func TestComposeServerStarts(t *testing.T) {
	root := composeRepoRoot(t)
	c := loadCompose(t, root)
	server := c.Services[composeServerService]
	image := map[string]string{}
	instrs := composeParseDockerfile(t, filepath.Join(root, "Dockerfile"))
	final := instrs[len(instrs)-1].Stage
	for _, in := range instrs {
		if in.Stage == final && in.Cmd == "ENV" {
			k, v, ok := strings.Cut(in.Args, "=")
			if !ok || strings.ContainsAny(v, " \"") {
				t.Fatalf("Dockerfile line %d: ENV %s: write one KEY=value per ENV", in.Line, in.Args)
			}
			image[k] = v
		}
	}
	for _, tc := range []struct {
		name  string
		shell map[string]string
		open  bool
	}{
		{"without JWT_SECRET", nil, true},
		{"with JWT_SECRET", map[string]string{"JWT_SECRET": "a secret of at least thirty-two bytes"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := maps.Clone(image)
			for k, v := range server.Environment {
				env[k] = composeInterpolate(t, v, tc.shell)
			}
			cfg, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
			if err != nil {
				t.Fatalf("the server would not start with the environment %v: %v", env, err)
			}
			if cfg.auth.open() != tc.open {
				t.Fatalf("open mode = %v, want %v (environment %v)", cfg.auth.open(), tc.open, env)
			}
			if !tc.open {
				return
			}
			for _, p := range server.Ports {
				if ip := net.ParseIP(strings.Trim(p.HostIP, "[]")); ip == nil || !ip.IsLoopback() {
					t.Errorf("the open server is published on %q (port %s), want a loopback address such as 127.0.0.1", p.HostIP, p.Published)
				}
			}
		})
	}
	// The image alone, without compose's environment and without a key,
	// refuses to serve openly on every interface.
	if _, err := parseConfig(nil, func(k string) string { return image[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Errorf("the image without a key or INSECURE_OPEN: %v, want a start-up error pointing at JWT_SECRET", err)
	}
}

// TestComposeConfig has the Compose implementation itself validate the file.
func TestComposeConfig(t *testing.T) {
	root := composeRepoRoot(t)
	var cmd *exec.Cmd
	if path, err := exec.LookPath("docker-compose"); err == nil {
		cmd = exec.Command(path, "-f", "compose.yaml", "config", "-q")
	} else if path, err := exec.LookPath("docker"); err == nil && exec.Command(path, "compose", "version").Run() == nil {
		cmd = exec.Command(path, "compose", "-f", "compose.yaml", "config", "-q")
	} else {
		msg := "neither docker-compose nor the docker compose plugin is installed: compose.yaml NOT validated by Compose"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("SKIP: " + msg)
	}
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("%s rejects compose.yaml: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		}
		t.Fatalf("run %s: %v", strings.Join(cmd.Args, " "), err)
	}
}

func composeServiceNames(c composeFile) []string {
	var names []string
	for n := range c.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// composeIsNamedVolume reports whether a mount source names a volume rather than a
// host path.
func composeIsNamedVolume(src string) bool {
	return src != "" && !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") && !strings.HasPrefix(src, "~")
}

func composeHasNamedVolume(mounts []composeMount, declared map[string]any) bool {
	for _, m := range mounts {
		if _, ok := declared[m.Source]; ok && composeIsNamedVolume(m.Source) {
			return true
		}
	}
	return false
}
