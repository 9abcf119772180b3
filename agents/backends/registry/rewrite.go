package registry

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
)

// Rewrite returns ref ("host/repo@sha256:<hex>", "host/repo:tag" or
// "repo@sha256:<hex>") with its registry host replaced by host (host[:port],
// e.g. the current address of the embedded registry). Consumers of the local
// backend use it to pull what a lock recorded whatever port the registry had
// then. It fails when ref is not a valid image reference or host not a
// valid registry name.
func Rewrite(ref, host string) (string, error) {
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	reg, err := name.NewRegistry(host, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("registry host %q: %w", host, err)
	}
	repo := reg.Repo(r.Context().RepositoryStr())
	switch t := r.(type) {
	case name.Digest:
		return repo.Digest(t.DigestStr()).Name(), nil
	case name.Tag:
		return repo.Tag(t.TagStr()).Name(), nil
	}
	return "", fmt.Errorf("image reference %q: neither a tag nor a digest", ref)
}
