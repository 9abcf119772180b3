package baseimage

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestLayerEntries(t *testing.T) {
	raw, err := LayerTar()
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	var got []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %o %d:%d %s", h.Name, h.Mode, h.Uid, h.Gid, h.ModTime.UTC().Format("2006-01-02")))
	}
	want := []string{
		"etc/ 755 0:0 1970-01-01",
		"etc/group 644 0:0 1970-01-01",
		"etc/nsswitch.conf 644 0:0 1970-01-01",
		"etc/passwd 644 0:0 1970-01-01",
		"etc/ssl/ 755 0:0 1970-01-01",
		"etc/ssl/certs/ 755 0:0 1970-01-01",
		"etc/ssl/certs/ca-certificates.crt 644 0:0 1970-01-01",
		"home/ 755 0:0 1970-01-01",
		"home/nonroot/ 700 65532:65532 1970-01-01",
		"root/ 700 0:0 1970-01-01",
		"tmp/ 1777 0:0 1970-01-01",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCertificates(t *testing.T) {
	data := CertificatesPEM()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(bytes.TrimSpace(rest)) != 0 {
				t.Fatal("trailing bytes after the last certificate")
			}
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("certificate %d: %v", n, err)
		}
		if !c.IsCA {
			t.Errorf("certificate %d (%s) is not a CA", n, c.Subject)
		}
		n++
	}
	// The NSS store holds about 150 roots; a handful carry constraints.
	if n < 100 {
		t.Fatalf("%d certificates", n)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatal("crypto/x509 cannot read the bundle")
	}
}

// TestSameOnEveryBuild: the layer (and so the image) has a fixed digest for
// a given branchml version: nothing of the building machine goes in. When
// golang.org/x/crypto/x509roots/fallback is updated in go.mod this digest
// changes, and only then.
func TestSameOnEveryBuild(t *testing.T) {
	amd, err := Image(v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	arm, err := Image(v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
	if err != nil {
		t.Fatal(err)
	}
	la, _ := amd.Layers()
	lb, _ := arm.Layers()
	da, _ := la[0].Digest()
	db, _ := lb[0].Digest()
	if da != db {
		t.Fatalf("layers differ between platforms: %s %s", da, db)
	}
	raw, _ := LayerTar()
	diff, _ := la[0].DiffID()
	if d, _, _ := v1.SHA256(bytes.NewReader(raw)); d != diff {
		t.Fatalf("diff ID %s, tar digest %s", diff, d)
	}
	const pinned = "sha256:22b035918a4d2ef11b2b43525e4e3e3b63d120506cf8c6d525527efd93f07b2c"
	if diff.String() != pinned {
		t.Logf("base layer diff ID is %s (pinned %s)", diff, pinned)
		t.Fail()
	}
	cf, _ := arm.ConfigFile()
	if cf.Architecture != "arm64" || cf.Variant != "v8" || cf.OS != "linux" || cf.Config.User != "65532:65532" || cf.Config.WorkingDir != "/home/nonroot" ||
		strings.Join(cf.Config.Env, " ") != "PATH=/usr/local/bin:/usr/bin:/bin HOME=/home/nonroot SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" {
		t.Fatalf("config %+v", cf)
	}
	if _, err := Image(v1.Platform{OS: "linux"}); err == nil {
		t.Fatal("a platform without an architecture was accepted")
	}
}
