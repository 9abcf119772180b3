package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/branchml/branchml/agents/internal/atomicfile"
)

// maxManifestBytes bounds a manifest body: the OCI distribution spec lets
// registries refuse manifests over 4 MiB.
const maxManifestBytes = 4 << 20

// Layout of a registry directory (see NewHandler).
const (
	blobsDir     = "blobs"     // blobs/sha256/<hex>: layers, configs and manifests
	refsDir      = "manifests" // manifests/<repository>/<tag or sha256:hex>.json: refRecord
	refExtension = ".json"
)

// refRecord is the file that persists one manifest reference.
type refRecord struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
}

// persistent wraps go-containerregistry's registry handler (whose manifests
// live in memory only, as of v0.22) and persists every manifest written
// through it, so that a restarted registry serves what was pushed before.
type persistent struct {
	dir   string
	inner http.Handler
	id    string
}

// manifestPath splits /v2/<repository>/manifests/<reference>; ok is false
// for any other path. The repository and the reference are validated with
// go-containerregistry's name rules, so that they are safe as file paths.
func manifestPath(p string) (repo, ref string, ok bool) {
	rest, found := strings.CutPrefix(p, "/v2/")
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/manifests/")
	if i <= 0 {
		return "", "", false
	}
	repo, ref = rest[:i], rest[i+len("/manifests/"):]
	if ref == "" || strings.Contains(ref, "/") || strings.HasPrefix(ref, ".") {
		return "", "", false
	}
	if _, err := name.NewRepository("localhost/"+repo, name.StrictValidation); err != nil || strings.Contains(repo, "..") {
		return "", "", false
	}
	if strings.HasPrefix(ref, "sha256:") {
		if _, err := v1.NewHash(ref); err != nil {
			return "", "", false
		}
	} else if _, err := name.NewTag("localhost/x:"+ref, name.StrictValidation); err != nil {
		return "", "", false
	}
	return repo, ref, true
}

func (p *persistent) refFile(repo, ref string) string {
	return filepath.Join(p.dir, refsDir, filepath.FromSlash(repo), ref+refExtension)
}

func (p *persistent) blobFile(h v1.Hash) string {
	return filepath.Join(p.dir, blobsDir, h.Algorithm, h.Hex)
}

func (p *persistent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(IDHeader, p.id)
	repo, ref, isManifest := manifestPath(r.URL.Path)
	if !isManifest || (r.Method != http.MethodPut && r.Method != http.MethodDelete) {
		if strings.Contains(r.URL.Path, "/manifests/") && !isManifest {
			writeRegError(w, http.StatusBadRequest, "NAME_INVALID", "invalid repository name or reference")
			return
		}
		p.inner.ServeHTTP(w, r)
		return
	}
	var body []byte
	if r.Method == http.MethodPut {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, maxManifestBytes+1))
		if err != nil {
			writeRegError(w, http.StatusBadRequest, "MANIFEST_INVALID", "read body: "+err.Error())
			return
		}
		if len(body) > maxManifestBytes {
			writeRegError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", "manifest larger than 4 MiB")
			return
		}
		if !json.Valid(body) {
			writeRegError(w, http.StatusBadRequest, "MANIFEST_INVALID", "manifest is not JSON")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	rec := httptest.NewRecorder()
	p.inner.ServeHTTP(rec, r)
	if err := p.persist(r.Method, rec.Code, repo, ref, r.Header.Get("Content-Type"), body); err != nil {
		writeRegError(w, http.StatusInternalServerError, "UNKNOWN", "persist manifest: "+err.Error())
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// persist records a successful manifest PUT (201) or DELETE (202).
func (p *persistent) persist(method string, code int, repo, ref, mediaType string, body []byte) error {
	switch {
	case method == http.MethodPut && code == http.StatusCreated:
		h, _, err := v1.SHA256(bytes.NewReader(body))
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p.blobFile(h), body, 0o644); err != nil {
			return err
		}
		rec := refRecord{MediaType: mediaType, Digest: h.String()}
		for _, target := range []string{ref, h.String()} {
			if err := atomicfile.WriteJSON(p.refFile(repo, target), rec); err != nil {
				return err
			}
		}
	case method == http.MethodDelete && code == http.StatusAccepted:
		if err := os.Remove(p.refFile(repo, ref)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

type storedRef struct {
	repo, ref string
	rec       refRecord
}

// replay loads every persisted manifest reference into the inner handler:
// image manifests first, then indexes (which need their children), in
// passes until no more succeed.
func (p *persistent) replay() error {
	root := filepath.Join(p.dir, refsDir)
	var refs []storedRef
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == root {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() || !strings.HasSuffix(path, refExtension) || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(strings.TrimSuffix(rel, refExtension))
		i := strings.LastIndex(rel, "/")
		if i <= 0 {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var rec refRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		refs = append(refs, storedRef{repo: rel[:i], ref: rel[i+1:], rec: rec})
		return nil
	})
	if err != nil {
		return err
	}
	sort.SliceStable(refs, func(i, j int) bool {
		ii, ij := types.MediaType(refs[i].rec.MediaType).IsIndex(), types.MediaType(refs[j].rec.MediaType).IsIndex()
		if ii != ij {
			return !ii
		}
		if refs[i].repo != refs[j].repo {
			return refs[i].repo < refs[j].repo
		}
		return refs[i].ref < refs[j].ref
	})
	var failed []string
	for pass := 0; len(refs) > 0 && pass < 4; pass++ {
		var next []storedRef
		failed = failed[:0]
		for _, s := range refs {
			if err := p.load(s); err != nil {
				next = append(next, s)
				failed = append(failed, fmt.Sprintf("%s:%s: %v", s.repo, s.ref, err))
			}
		}
		refs = next
	}
	if len(failed) > 0 {
		return fmt.Errorf("restore manifests: %s", strings.Join(failed, "; "))
	}
	return nil
}

func (p *persistent) load(s storedRef) error {
	h, err := v1.NewHash(s.rec.Digest)
	if err != nil {
		return err
	}
	body, err := os.ReadFile(p.blobFile(h))
	if err != nil {
		return err
	}
	req := httptest.NewRequest(http.MethodPut, "/v2/"+s.repo+"/manifests/"+s.ref, bytes.NewReader(body))
	req.Header.Set("Content-Type", s.rec.MediaType)
	rec := httptest.NewRecorder()
	p.inner.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		return fmt.Errorf("status %d: %s", rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	return nil
}

// writeRegError writes an error in the OCI distribution spec's error body format.
func writeRegError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}
