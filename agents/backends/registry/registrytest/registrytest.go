package registrytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Binary is Debian's name for the Distribution registry's executable.
const Binary = "docker-registry"

// RequireEnv, when "1", makes a missing docker-registry (or buildah) a test
// failure instead of a skip: CI sets it, having installed them.
const RequireEnv = "BRANCHML_REQUIRE_INTEGRATION"

// Options say what the registry requires.
type Options struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 signed by a CA made
	// for the test (Registry.CAFile).
	TLS bool
	// Auth requires HTTP basic credentials (htpasswd, bcrypt):
	// Registry.User and Registry.Password.
	Auth bool
}

// Registry is a running Distribution registry.
type Registry struct {
	// Host is "127.0.0.1:<port>".
	Host string
	// CAFile is the PEM file of the CA that signed its certificate (TLS only).
	CAFile string
	// User and Password are the credentials it accepts (Auth only).
	User, Password string
	// Dir holds its configuration, certificates and storage.
	Dir string
	// Log is its log file.
	Log string
}

// Need skips t (or fails it when RequireEnv is set) unless cmd is on PATH.
func Need(t testing.TB, cmd string) string {
	t.Helper()
	p, err := exec.LookPath(cmd)
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s is not installed (%s=1): apt-get install it", cmd, RequireEnv)
		}
		t.Skipf("%s is not installed (Debian: apt-get install %s)", cmd, debianPackage(cmd))
	}
	return p
}

func debianPackage(cmd string) string {
	if cmd == Binary {
		return "docker-registry"
	}
	return cmd
}

// Start runs a registry for t and stops it when t ends.
func Start(t testing.TB, o Options) *Registry {
	t.Helper()
	bin := Need(t, Binary)
	r := &Registry{Dir: t.TempDir()}
	r.Log = filepath.Join(r.Dir, "registry.log")
	var extra strings.Builder
	if o.TLS {
		if err := r.makeCerts(); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&extra, "  tls:\n    certificate: %s\n    key: %s\n", filepath.Join(r.Dir, "server.pem"), filepath.Join(r.Dir, "server.key"))
	}
	auth := ""
	if o.Auth {
		r.User, r.Password = "robot", "pw-"+randomHex(8)
		hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.Dir, "htpasswd"), []byte(r.User+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = "auth:\n  htpasswd:\n    realm: branchml-test\n    path: " + filepath.Join(r.Dir, "htpasswd") + "\n"
	}
	var lastErr error
	for try := 0; try < 3; try++ { // the free port may be taken between probe and start
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		r.Host = fmt.Sprintf("127.0.0.1:%d", port)
		cfg := "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n" +
			"storage:\n  filesystem:\n    rootdirectory: " + filepath.Join(r.Dir, "data") + "\n  delete:\n    enabled: true\n" +
			"http:\n  addr: " + r.Host + "\n  secret: " + randomHex(16) + "\n" + extra.String() + auth
		cfgFile := filepath.Join(r.Dir, "config.yml")
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if lastErr = r.run(t, bin, cfgFile, o.TLS); lastErr == nil {
			return r
		}
	}
	t.Fatalf("start %s: %v", Binary, lastErr)
	return nil
}

func (r *Registry) run(t testing.TB, bin, cfgFile string, useTLS bool) error {
	logf, err := os.OpenFile(r.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "serve", cfgFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	client := &http.Client{Timeout: 2 * time.Second}
	scheme := "http"
	if useTLS {
		pool := x509.NewCertPool()
		raw, _ := os.ReadFile(r.CAFile)
		pool.AppendCertsFromPEM(raw)
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		scheme = "https"
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			log, _ := os.ReadFile(r.Log)
			return fmt.Errorf("exited: %v\n%s", err, log)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+r.Host+"/v2/", nil)
		resp, err := client.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				t.Cleanup(stop)
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	log, _ := os.ReadFile(r.Log)
	return fmt.Errorf("%s did not answer on %s within 20s\n%s", Binary, r.Host, log)
}

// Env returns a getenv for the registry's credentials
// (REGISTRY_USERNAME/REGISTRY_PASSWORD), for registry.WithGetenv.
func (r *Registry) Env() func(string) string {
	env := map[string]string{"REGISTRY_USERNAME": r.User, "REGISTRY_PASSWORD": r.Password}
	return func(k string) string { return env[k] }
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// makeCerts writes ca.pem (CAFile), server.pem and server.key: a CA and a
// certificate for 127.0.0.1 and localhost that it signed, valid for a day.
func (r *Registry) makeCerts() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "branchml test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	r.CAFile = filepath.Join(r.Dir, "ca.pem")
	for path, block := range map[string]*pem.Block{
		r.CAFile:                           {Type: "CERTIFICATE", Bytes: caDER},
		filepath.Join(r.Dir, "server.pem"): {Type: "CERTIFICATE", Bytes: srvDER},
		filepath.Join(r.Dir, "server.key"): {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
	}
	return nil
}
