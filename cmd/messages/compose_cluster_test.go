package main

import (
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestComposeCluster checks the cluster profile of compose.yaml: NATS and
// three nodes that would start in cluster mode with distinct ids, on a
// database of their own (never the single server's), published on
// distinct loopback ports.
func TestComposeCluster(t *testing.T) {
	root := composeRepoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var profiles struct {
		Services map[string]struct {
			Profiles []string `yaml:"profiles"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &profiles); err != nil {
		t.Fatal(err)
	}
	c := loadCompose(t, root)
	single := c.Services[composeServerService]
	if len(profiles.Services[composeServerService].Profiles) != 0 || len(profiles.Services[composeDBService].Profiles) != 0 {
		t.Fatal("the single server and PostgreSQL must start without a profile")
	}
	if p := profiles.Services["nats"].Profiles; len(p) != 1 || p[0] != "cluster" {
		t.Fatalf("nats service: profiles %q, want [cluster]", p)
	}
	image := map[string]string{"LISTEN_ADDR": ":3000", "DATABASE_URL": "sqlite:/data/messages.db"}
	ids := map[string]bool{}
	ports := map[string]bool{}
	for name, svc := range c.Services {
		if !strings.HasPrefix(name, "node") {
			continue
		}
		if p := profiles.Services[name].Profiles; len(p) != 1 || p[0] != "cluster" {
			t.Errorf("%s: profiles %q, want [cluster]", name, p)
		}
		env := maps.Clone(image)
		for k, v := range svc.Environment {
			env[k] = composeInterpolate(t, v, nil)
		}
		cfg, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatalf("%s would not start: %v", name, err)
		}
		if !cfg.cluster.on() || ids[cfg.cluster.nodeID] {
			t.Errorf("%s: cluster mode %v, node id %q (ids so far %v): want on, and distinct", name, cfg.cluster.on(), cfg.cluster.nodeID, ids)
		}
		ids[cfg.cluster.nodeID] = true
		if u, err := url.Parse(cfg.cluster.natsURL); err != nil || u.Hostname() != "nats" {
			t.Errorf("%s: NATS_URL %q, want the nats service", name, cfg.cluster.natsURL)
		}
		if cfg.databaseURL == single.Environment["DATABASE_URL"] {
			t.Errorf("%s: shares the single server's database %q", name, cfg.databaseURL)
		}
		if svc.DependsOn[composeDBService] != "service_healthy" || svc.DependsOn["nats"] == "" {
			t.Errorf("%s: depends_on %v, want postgres healthy and nats", name, svc.DependsOn)
		}
		for _, p := range svc.Ports {
			if ip := net.ParseIP(p.HostIP); ip == nil || !ip.IsLoopback() || ports[p.Published] {
				t.Errorf("%s: port %s:%s, want a distinct port on loopback (the nodes run in open mode)", name, p.HostIP, p.Published)
			}
			ports[p.Published] = true
		}
	}
	if len(ids) != 3 {
		t.Fatalf("%d cluster nodes, want 3", len(ids))
	}
}
