package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// basicAuth requires HTTP basic credentials user:pass on every request, as
// the distribution spec's token-less registries do (401 with a Basic challenge).
func basicAuth(h http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="branchml"`)
			writeRegError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func TestCredentialSources(t *testing.T) {
	srv := httptest.NewServer(basicAuth(newHandler(t), "robot", "s3cret-pw"))
	defer srv.Close()
	host := srv.Listener.Addr().String()
	img := testImage(t, map[string]string{"a": "b"})
	push := func(getenv func(string) string) error {
		reg, err := NewRemote(host, fast(), WithInsecure(true), WithGetenv(getenv))
		if err != nil {
			return err
		}
		_, err = reg.Push(context.Background(), "x/y", "", img)
		return err
	}

	// Docker config in DOCKER_CONFIG (read by go-containerregistry's default keychain).
	cfgDir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("robot:s3cret-pw"))
	os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600)
	t.Setenv("DOCKER_CONFIG", cfgDir)
	if err := push(os.Getenv); err != nil {
		t.Fatalf("push with the Docker config: %v", err)
	}

	// REGISTRY_USERNAME/REGISTRY_PASSWORD win over the Docker config.
	env := map[string]string{"REGISTRY_USERNAME": "robot", "REGISTRY_PASSWORD": "wrong-pw"}
	err := push(func(k string) string { return env[k] })
	var re *Error
	if !errors.As(err, &re) || re.Status != 401 || re.Credentials != "REGISTRY_USERNAME/REGISTRY_PASSWORD" {
		t.Fatalf("wrong password: err = %v", err)
	}
	env["REGISTRY_PASSWORD_FILE"] = filepath.Join(t.TempDir(), "pw")
	os.WriteFile(env["REGISTRY_PASSWORD_FILE"], []byte("s3cret-pw\n"), 0o600)
	delete(env, "REGISTRY_PASSWORD")
	if err := push(func(k string) string { return env[k] }); err != nil {
		t.Fatalf("push with REGISTRY_PASSWORD_FILE: %v", err)
	}

	// No credentials at all: 401 at once, naming the source.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	err = push(func(k string) string { return map[string]string{"DOCKER_CONFIG": os.Getenv("DOCKER_CONFIG")}[k] })
	if !errors.As(err, &re) || re.Status != 401 || re.Attempts != 1 || re.Credentials != "Docker config in DOCKER_CONFIG="+os.Getenv("DOCKER_CONFIG") {
		t.Fatalf("anonymous: err = %v (%+v)", err, re)
	}
}
