package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moreh-io/moreh/cmd/morehd/morehdtest"
	"golang.org/x/crypto/bcrypt"
)

func TestTokenCommand(t *testing.T) {
	d := morehdtest.Start(t)
	code, secret, stderr := runMorehd(t, "token", "add", "alice", "--max-devices", "2", "--priority", "-5", "--max-units", "4", "--mount", d.Mount)
	if code != 0 || !strings.HasPrefix(secret, "mrh_") || len(secret) != 45 || stderr != "" {
		t.Fatalf("token add: %d %q %q", code, secret, stderr)
	}
	for file, want := range map[string]string{"max_devices": "2\n", "priority": "-5\n", "max_units": "4\n", "shared": "0\n"} {
		if got := read(t, d.Path("admin", "tokens", "alice", file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if code, _, stderr := runMorehd(t, "token", "add", "bob", "--priority", "+5", "--mount", d.Mount); code != 1 || !strings.Contains(stderr, "invalid argument") {
		t.Errorf("token add --priority +5: %d %q, want exit 1 and EINVAL", code, stderr)
	}
	if code, _, _ := runMorehd(t, "token", "rm", "bob", "--mount", d.Mount); code != 0 {
		t.Errorf("token rm bob: exit %d", code)
	}
	if err := os.WriteFile(d.Path("token"), []byte(secret), 0); err != nil {
		t.Fatalf("root binds to alice: %v", err)
	}
	if err := os.Mkdir(d.Path("devices", "small"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runMorehd(t, "token", "list", "--mount", d.Mount)
	want := "TOKEN                             DEVICES  PRIORITY  MAX_UNITS  SHARED  UIDS\n" +
		"alice                             1/2      -5        4          no      0\n" +
		"default                           0/5      0         none       no      -\n"
	if code != 0 || out != want {
		t.Errorf("token list:\n%s\nwant:\n%s", out, want)
	}
	code, _, stderr = runMorehd(t, "token", "rm", "alice", "--mount", d.Mount)
	if code != 1 || !strings.Contains(stderr, "Token alice still has 1 devices: remove them first.") {
		t.Errorf("token rm with a device: %d %q", code, stderr)
	}
	code, _, stderr = runMorehd(t, "token", "add", "Bad Name", "--mount", d.Mount)
	if code != 1 || !strings.Contains(stderr, "is not a token name") {
		t.Errorf("token add with a bad name: %d %q", code, stderr)
	}
	if code, _, _ := runMorehd(t, "token", "frobnicate", "--mount", d.Mount); code != 2 {
		t.Errorf("token frobnicate: exit %d, want 2", code)
	}
	// The secret survives a restart: it derives from the node key.
	d.Stop()
	d.Restart()
	if got := read(t, d.Path("admin", "tokens", "alice", "secret")); got != secret {
		t.Errorf("secret after a restart = %q, want %q", got, secret)
	}
	if got, _ := os.Readlink(d.Path("devices")); got != "tokens/alice/devices" {
		t.Errorf("root's binding after a restart: %q", got)
	}
	if strings.Contains(d.Log(), secret[4:]) {
		t.Error("the daemon log shows a secret")
	}
}

func TestTokenFile(t *testing.T) {
	file := t.TempDir() + "/token"
	if err := os.WriteFile(file, []byte("team-secret-1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := morehdtest.Start(t, "--token-file", file)
	if err := os.WriteFile(d.Path("token"), []byte("team-secret-1234"), 0); err != nil {
		t.Errorf("the shared token is rejected: %v", err)
	}
	if err := os.WriteFile(d.Path("token"), []byte("another"), 0); err == nil {
		t.Error("a wrong secret is accepted")
	}
	if got, _ := os.Readlink(d.Path("devices")); got != "tokens/default/devices" {
		t.Errorf("devices link = %q", got)
	}
}

// TestMetricsAddr: --metrics-addr serves the node's and the GPUs' figures
// to anyone who reaches it, without a token's name or a device id; with
// --metrics-tokens, also every token's series, as root's metrics file, and
// then only over TLS to a client with the web config's basic-auth password.
func TestMetricsAddr(t *testing.T) {
	webConfig, pool := writeWebConfig(t, "prometheus", "s3cret")
	for _, withTokens := range []bool{false, true} {
		args := []string{"--metrics-addr", "127.0.0.1:0"}
		get := func(url string) (*http.Response, error) { return http.Get(url) }
		scheme := "http://"
		if withTokens {
			args = append(args, "--metrics-tokens", "--web-config-file", webConfig)
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			get = func(url string) (*http.Response, error) {
				req, _ := http.NewRequest("GET", url, nil)
				req.SetBasicAuth("prometheus", "s3cret")
				return client.Do(req)
			}
			scheme = "https://"
		}
		d := morehdtest.Start(t, args...)
		if err := os.Mkdir(d.Path("devices", "small"), 0o755); err != nil {
			t.Fatal(err)
		}
		addr := metricsAddr(d)
		resp, err := get(scheme + addr + "/metrics")
		if err != nil {
			t.Fatalf("GET metrics from %q: %v", addr, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		file := read(t, d.Path("metrics"))
		if !regexp.MustCompile(`(?m)^moreh_device_memory_total_bytes\{device="2026",model="Small.64GB",node="[^"]+",token="default"\} 6\.870269952e\+10$`).MatchString(file) {
			t.Errorf("metrics lack the device:\n%s", file)
		}
		switch {
		case resp.StatusCode != 200:
			t.Errorf("HTTP metrics: %d", resp.StatusCode)
		case withTokens && !containsAllLines(string(body), file):
			t.Errorf("HTTP metrics with --metrics-tokens lack the metrics file's series:\n%s\n---\n%s", body, file)
		case !strings.Contains(string(body), "\ngo_goroutines ") || !strings.Contains(string(body), "\nprocess_resident_memory_bytes "):
			t.Errorf("HTTP metrics lack the daemon's go_* and process_* series:\n%s", body)
		case !withTokens && (strings.Contains(string(body), "token=") || strings.Contains(string(body), `device="2026"`) || !strings.Contains(string(body), "moreh_pool_units{") || !strings.Contains(string(body), "DCGM_FI_DEV_FB_USED")):
			t.Errorf("HTTP metrics without --metrics-tokens show a token or device id, or lack the GPUs:\n%s", body)
		}
		if withTokens {
			checkMetricsRefused(t, addr, pool)
		}
	}
}

// checkMetricsRefused: the token series' port answers no one without the
// password, and nothing in clear.
func checkMetricsRefused(t *testing.T, addr string, pool *x509.CertPool) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, pass := range []string{"", "wrong"} {
		req, _ := http.NewRequest("GET", "https://"+addr+"/metrics", nil)
		if pass != "" {
			req.SetBasicAuth("prometheus", pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "token=") {
			t.Errorf("metrics with password %q: %d %q, want 401 and no series", pass, resp.StatusCode, body)
		}
	}
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || strings.Contains(string(body), "token=") {
			t.Errorf("metrics in clear: %d %q", resp.StatusCode, body)
		}
	}
}

// writeWebConfig writes a self-signed certificate for 127.0.0.1 and an
// exporter-toolkit web config serving it with one basic-auth user; it
// returns the config's path and a pool that trusts the certificate.
func writeWebConfig(t *testing.T, user, password string) (string, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "morehd test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		"web.yml":  []byte(fmt.Sprintf("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  %s: %s\n", user, hash)),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(files["cert.pem"])
	return filepath.Join(dir, "web.yml"), pool
}

// TestMetricsTokensNeedAuth: the token series are never served in clear or
// to anyone: --metrics-tokens without a web config with TLS and users, or a
// web config the toolkit refuses, stops the start with one line.
func TestMetricsTokensNeedAuth(t *testing.T) {
	dir := t.TempDir()
	usersOnly := filepath.Join(dir, "users.yml")
	broken := filepath.Join(dir, "broken.yml")
	os.WriteFile(usersOnly, []byte("basic_auth_users:\n  p: $2y$10$abcdefghijklmnopqrstuuC0Xg6M4hZ3yPpG3w7y2b3cHnXHh7f8y\n"), 0o600)
	os.WriteFile(broken, []byte("tls_server_config:\n  cert_file: nowhere.pem\n  key_file: nowhere.pem\nbogus: 1\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--metrics-addr", "127.0.0.1:0", "--metrics-tokens"}, "only behind authentication: give --web-config-file"},
		{[]string{"--metrics-addr", "127.0.0.1:0", "--metrics-tokens", "--web-config-file", usersOnly}, "needs both tls_server_config and basic_auth_users"},
		{[]string{"--metrics-addr", "127.0.0.1:0", "--web-config-file", broken}, "--web-config-file " + broken},
		{[]string{"--web-config-file", usersOnly}, "--web-config-file goes with --metrics-addr"},
		{[]string{"--metrics-tokens"}, "--metrics-tokens goes with --metrics-addr"},
	} {
		code, _, stderr := runMorehd(t, append(c.args, "--mount", filepath.Join(dir, "m"), "--db", filepath.Join(dir, "db"))...)
		if code == 0 || strings.Count(stderr, "\n") > 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("morehd %v: exit %d, %q; want a refusal naming %q", c.args, code, stderr, c.want)
		}
	}
}

// containsAllLines reports whether every line of part is a line of whole.
func containsAllLines(whole, part string) bool {
	lines := map[string]bool{}
	for _, l := range strings.Split(whole, "\n") {
		lines[l] = true
	}
	for _, l := range strings.Split(part, "\n") {
		if !lines[l] {
			return false
		}
	}
	return true
}

// TestMetricsPassPromtool: a live scrape passes `promtool check metrics`
// but for what dcgm-exporter's names ask for (its DCGM_* names and camelCase
// labels, kept so that its dashboards work); CI installs promtool.
func TestMetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian's prometheus package; .ci/run installs it)")
	}
	d := morehdtest.Start(t, "--metrics-addr", "127.0.0.1:0", "--gpus", "sim:2x64GB")
	if err := os.Mkdir(d.Path("devices", "small"), 0o755); err != nil {
		t.Fatal(err)
	}
	addr := metricsAddr(d)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(string(body))
	out, _ := check.CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" || strings.HasPrefix(line, "DCGM_FI_DEV_") {
			continue // dcgm-exporter's names and labels, on purpose
		}
		t.Errorf("promtool: %s", line)
	}
}

// metricsAddr is where the daemon said it serves metrics.
func metricsAddr(d *morehdtest.Daemon) string {
	var addr string
	for _, line := range strings.Split(d.Log(), "\n") {
		if strings.Contains(line, `msg="serving metrics"`) {
			_, addr, _ = strings.Cut(line, " addr=")
		}
	}
	return addr
}
