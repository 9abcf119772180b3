package baseimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/pem"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The user, paths and environment of the base image.
const (
	// User is the image's user as "uid:gid" (numeric, so that Kubernetes'
	// runAsNonRoot can check it without reading /etc/passwd).
	User = "65532:65532"
	// UID and GID of the nonroot user.
	UID, GID = 65532, 65532
	// Home is the nonroot user's home and the image's working directory.
	Home = "/home/nonroot"
	// CAFile is the PEM bundle of root certificates (Go's crypto/x509 reads
	// it there first on Linux; SSL_CERT_FILE names it for other programs).
	CAFile = "/etc/ssl/certs/ca-certificates.crt"
	// Path is the image's PATH.
	Path = "/usr/local/bin:/usr/bin:/bin"
)

// Entry is one file or directory of the base layer.
type Entry struct {
	// Path is the path in the image without a leading slash ("etc/passwd");
	// directories end with "/".
	Path string
	// Mode holds the permission bits, with fs.ModeSticky's tar bit (01000)
	// for /tmp.
	Mode int64
	// UID and GID own the entry.
	UID, GID int
	// Data is a file's content (nil for directories).
	Data []byte
}

// Entries are the files and directories of the base layer, in the order
// they are written (lexical by path, parents first).
func Entries() []Entry {
	es := []Entry{
		{Path: "etc/", Mode: 0o755},
		{Path: "etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		{Path: "etc/nsswitch.conf", Mode: 0o644, Data: []byte("hosts: files dns\n")},
		{Path: "etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "etc/ssl/", Mode: 0o755},
		{Path: "etc/ssl/certs/", Mode: 0o755},
		{Path: "etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Data: CertificatesPEM()},
		{Path: "home/", Mode: 0o755},
		{Path: "home/nonroot/", Mode: 0o700, UID: UID, GID: GID},
		{Path: "root/", Mode: 0o700},
		{Path: "tmp/", Mode: 0o1777},
	}
	sort.Slice(es, func(i, j int) bool { return es[i].Path < es[j].Path })
	return es
}

var (
	pemOnce sync.Once
	pemData []byte
)

// CertificatesPEM is the CA bundle: every root of the pinned NSS trust
// store without an additional constraint, as PEM, in the store's order.
// Roots that NSS distrusts after a date cannot be expressed in a PEM bundle
// and are left out (as Debian's ca-certificates leaves out distrusted roots).
func CertificatesPEM() []byte {
	pemOnce.Do(func() {
		var b bytes.Buffer
		for r := range bundle.Roots() {
			if r.Constraint != nil {
				continue
			}
			_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
		}
		pemData = b.Bytes()
	})
	return pemData
}

// epoch is the time of every entry: the layer is the same on every build.
var epoch = time.Unix(0, 0).UTC()

var (
	layerOnce sync.Once
	layer     v1.Layer
	layerErr  error
)

// LayerTar is the uncompressed tar of Entries: owners numeric (names
// empty), every time the Unix epoch, PAX format.
func LayerTar() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range Entries() {
		h := &tar.Header{Name: e.Path, Mode: e.Mode, Uid: e.UID, Gid: e.GID, ModTime: epoch, Format: tar.FormatPAX}
		if strings.HasSuffix(e.Path, "/") {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Layer is the base layer, gzip-compressed (OCI media type).
func Layer() (v1.Layer, error) {
	layerOnce.Do(func() {
		raw, err := LayerTar()
		if err != nil {
			layerErr = err
			return
		}
		layer, layerErr = LayerFromTar(raw, gzip.BestCompression)
	})
	return layer, layerErr
}

// LayerFromTar returns the OCI gzip layer of the uncompressed tar raw,
// compressed once at level (compress/gzip's levels) and kept in memory
// with its digest and diff ID computed in the same pass: no later read
// compresses or hashes it again.
func LayerFromTar(raw []byte, level int) (v1.Layer, error) {
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, level)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	diffID, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	digest, size, err := v1.SHA256(bytes.NewReader(gz.Bytes()))
	if err != nil {
		return nil, err
	}
	return &memLayer{gz: gz.Bytes(), digest: digest, diffID: diffID, size: size}, nil
}

// memLayer is a gzip layer in memory (see LayerFromTar).
type memLayer struct {
	gz             []byte
	digest, diffID v1.Hash
	size           int64
}

func (l *memLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *memLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *memLayer) Size() (int64, error)     { return l.size, nil }
func (l *memLayer) MediaType() (types.MediaType, error) {
	return types.OCILayer, nil
}
func (l *memLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.gz)), nil
}
func (l *memLayer) Uncompressed() (io.ReadCloser, error) {
	return gzip.NewReader(bytes.NewReader(l.gz))
}

// Image is the base image for platform p (only OS, Architecture and
// Variant are used): the base layer, User, WorkingDir Home, and the
// environment PATH, HOME and SSL_CERT_FILE; created at the Unix epoch.
// Its layer is the same for every platform.
func Image(p v1.Platform) (v1.Image, error) {
	if p.OS == "" || p.Architecture == "" {
		return nil, fmt.Errorf("base image: platform %q/%q: want an OS and an architecture", p.OS, p.Architecture)
	}
	layer, err := Layer()
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "branchml base image", Comment: "nonroot user, /tmp, CA certificates"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = User
	cf.Config.WorkingDir = Home
	cf.Config.Env = []string{"PATH=" + Path, "HOME=" + Home, "SSL_CERT_FILE=" + CAFile}
	return mutate.ConfigFile(img, cf)
}
