package github

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func do(t *testing.T, method, url, token, body string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "token "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	s := Start(t, WithToken("tok"))
	sha := s.Commit("main", map[string][]byte{"a/b.txt": []byte("hi"), "c": []byte("c")}, "init")
	if code, body := do(t, "GET", s.URL+"/repos/acme/ml/git/ref/heads/main", "", ""); code != 401 || !strings.Contains(body, `"message":"Bad credentials"`) {
		t.Fatalf("no token: %d %s", code, body)
	}
	code, body := do(t, "GET", s.URL+"/api/v3/repos/acme/ml/git/ref/heads/main", "tok", "")
	var ref struct {
		Ref    string
		Object struct{ SHA, Type string }
	}
	json.Unmarshal([]byte(body), &ref)
	if code != 200 || ref.Ref != "refs/heads/main" || ref.Object.SHA != sha || ref.Object.Type != "commit" {
		t.Fatalf("GHE ref: %d %s", code, body)
	}
	code, body = do(t, "GET", s.URL+"/repos/acme/ml/contents/a?ref=main", "tok", "")
	if code != 200 || !strings.Contains(body, `"name":"b.txt"`) || !strings.Contains(body, `"type":"file"`) || !strings.HasPrefix(body, "[") {
		t.Fatalf("dir: %d %s", code, body)
	}
	code, body = do(t, "GET", s.URL+"/repos/acme/ml/contents/?ref=main", "tok", "")
	if code != 200 || !strings.Contains(body, `"name":"a","path":"a","sha":"","size":0,"type":"dir"`) {
		t.Fatalf("root: %d %s", code, body)
	}
	code, body = do(t, "POST", s.URL+"/repos/acme/ml/git/blobs", "tok", `{"content":"aGk=","encoding":"base64"}`)
	if code != 201 || !strings.Contains(body, `"sha":"32f95c0d1244a78b2be1bab8de17906fabb2c4a8"`) {
		t.Fatalf("blob: %d %s", code, body)
	}
	var b struct{ SHA string }
	json.Unmarshal([]byte(body), &b)
	if code, body := do(t, "GET", s.URL+"/repos/acme/ml/git/blobs/"+b.SHA, "tok", "", "Accept", "application/vnd.github.v3.raw"); code != 200 || body != "hi" {
		t.Fatalf("raw blob: %d %q", code, body)
	}
	if code, body := do(t, "POST", s.URL+"/repos/acme/ml/git/trees", "tok", `{"tree":[`); code != 400 || !strings.Contains(body, "Problems parsing JSON") {
		t.Fatalf("bad json: %d %s", code, body)
	}
	if code, _ := do(t, "GET", s.URL+"/repos/other/ml/git/ref/heads/main", "tok", ""); code != 404 {
		t.Fatalf("other repo: %d", code)
	}
	if code, body := do(t, "POST", s.URL+"/repos/acme/ml/git/refs", "tok", `{"ref":"refs/heads/main","sha":"`+sha+`"}`); code != 422 || !strings.Contains(body, "Reference already exists") {
		t.Fatalf("dup ref: %d %s", code, body)
	}
	// A ref update that is not a fast forward is refused unless forced.
	other := s.Commit("other", map[string][]byte{"x": []byte("x")}, "root")
	if code, body := do(t, "PATCH", s.URL+"/repos/acme/ml/git/refs/heads/main", "tok", `{"sha":"`+other+`","force":false}`); code != 422 || !strings.Contains(body, "Update is not a fast forward") {
		t.Fatalf("non-ff: %d %s", code, body)
	}
	if code, _ := do(t, "PATCH", s.URL+"/repos/acme/ml/git/refs/heads/main", "tok", `{"sha":"`+other+`","force":true}`); code != 200 || s.Branch("main") != other {
		t.Fatalf("forced: %d", code)
	}
	reqs := s.Requests()
	if last := reqs[len(reqs)-1]; last.Method != "PATCH" || last.Body != `{"sha":"`+other+`","force":true}` || last.Status != 200 || last.Authorization != "token tok" {
		t.Fatalf("recorded %+v", last)
	}
}
