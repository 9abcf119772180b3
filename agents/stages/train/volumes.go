package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/branchml/branchml/agents/backends/storage"
	"github.com/branchml/branchml/agents/internal/agent"
)

type vols struct {
	// dataPath and modelBase are the pipeline parameters: local directories
	// for local volumes, mount paths for PVCs.
	dataPath, modelBase string
	// modelDir is the local model base directory ("" for a PVC).
	modelDir string
}

func discardLogger() *logrus.Logger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}

// fetchTmp is the staging directory of a data fetch inside the volume.
const fetchTmp = ".branchml-fetch"

// volumes provisions (or, dry, plans) the data and model volumes.
func (s *stage) volumes(ctx context.Context) (*vols, error) {
	t := s.cfg.Training
	model := s.cfg.Deploy.Model
	v := &vols{dataPath: KFPDataMount, modelBase: KFPModelMount + "/" + model}
	if err := s.preflight(ctx); err != nil {
		return nil, err
	}
	if s.o.DryRun {
		if s.cfg.Backends.Pipelines.Type != "kfp" {
			v.dataPath, v.modelBase = "<path of volume "+t.Data.Volume+">", "<path of volume "+t.Model.Volume+">/"+model
		}
		s.log().Infof("plan: data volume %s (%s, provision %v, source %q), model volume %s (%s)", t.Data.Volume, t.Data.Size, t.Data.Provision, t.Data.Source, t.Model.Volume, t.Model.Size)
		return v, nil
	}
	labels := func(role string) map[string]string {
		return map[string]string{storage.KeyManagedBy: storage.ManagedBy, storage.KeyRole: role, storage.LabelPrefix + "project": storage.LabelValue(s.cfg.Project)}
	}
	data, err := s.o.Storage.EnsureVolume(ctx, storage.VolumeSpec{Name: t.Data.Volume, Size: t.Data.Size, Labels: labels("data")})
	if err != nil {
		return nil, agent.Failed("provision data volume "+t.Data.Volume, err, "check backends.storage and training.data")
	}
	switch {
	case data.Created && !t.Data.Provision:
		s.log().Warnf("data volume %s did not exist and was created empty (training.data.provision is false, so nothing is fetched into it)", data.Name)
	case data.Created:
		s.log().Infof("data volume %s created (%s)", data.Name, t.Data.Size)
	}
	if t.Data.Provision && t.Data.Source != "" {
		if err := s.fetch(data); err != nil {
			return nil, err
		}
	}
	mv, err := s.o.Storage.EnsureVolume(ctx, storage.VolumeSpec{Name: t.Model.Volume, Size: t.Model.Size, Labels: labels("model")})
	if err != nil {
		return nil, agent.Failed("provision model volume "+t.Model.Volume, err, "check backends.storage and training.model")
	}
	if data.Path != "" {
		v.dataPath = data.Path
	}
	if mv.Path != "" {
		v.modelDir = filepath.Join(mv.Path, model)
		v.modelBase = v.modelDir
		if err := os.MkdirAll(v.modelDir, 0o755); err != nil {
			return nil, agent.Failed("prepare model volume "+mv.Name, err, "")
		}
	}
	return v, nil
}

// preflight runs the storage backend's read-only checks (storage.Preflighter)
// before anything is provisioned, and in a plan, so that a missing snapshot
// class is found now and not after the whole training run. A plan without a
// storage backend skips it.
func (s *stage) preflight(ctx context.Context) error {
	p, ok := s.o.Storage.(storage.Preflighter)
	if !ok {
		return nil
	}
	if err := p.Preflight(ctx); err != nil {
		if errors.Is(err, storage.ErrPreflight) {
			return agent.Usage("storage preflight", err, "fix backends.storage and snapshot.class (nothing was created)")
		}
		return agent.Failed("storage preflight", err, "check the cluster of backends.storage and its credentials, then run the stage again")
	}
	return nil
}

// fetch copies a local data source into an empty local data volume. A
// kaggle: source is left to the pipeline's data component; a PVC cannot be
// filled from here.
func (s *stage) fetch(vol *storage.Volume) error {
	src := s.cfg.Training.Data.Source
	if strings.HasPrefix(src, "kaggle:") {
		s.log().Infof("data source %s: fetched by the pipeline's data component", src)
		return nil
	}
	if vol.Path == "" {
		s.log().Warnf("data volume %s is a PVC: the local source %s cannot be copied into it from here; the pipeline's data component must fetch it", vol.Name, src)
		return nil
	}
	empty, err := emptyDir(vol.Path)
	if err != nil {
		return agent.Failed("inspect data volume "+vol.Name, err, "")
	}
	if !empty {
		s.log().Infof("data volume %s already holds data; source %s not copied again", vol.Name, src)
		return nil
	}
	from := s.cfg.Path(src)
	fi, err := os.Stat(from)
	if err != nil {
		return agent.Usage("training.data.source", err, "give an existing file or folder (relative to branchml.yaml), or kaggle:<owner>/<dataset>")
	}
	tmp := filepath.Join(vol.Path, fetchTmp)
	if err := os.RemoveAll(tmp); err != nil {
		return agent.Failed("fetch data", err, "")
	}
	if fi.IsDir() {
		err = copyTree(from, tmp)
	} else {
		err = copyFile(from, filepath.Join(tmp, filepath.Base(from)), fi.Mode())
	}
	if err == nil {
		err = moveChildren(tmp, vol.Path)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return agent.Failed(fmt.Sprintf("copy %s into data volume %s", src, vol.Name), err, "check the source and the space on the volume")
	}
	s.log().Infof("data source %s copied into volume %s", src, vol.Name)
	return os.Remove(tmp)
}

func emptyDir(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		if e.Name() != fetchTmp {
			return false, nil
		}
	}
	return true, nil
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			return copyFile(p, target, fi.Mode())
		}
		return nil // symlinks and special files are not data
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode.Perm()|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func moveChildren(from, to string) error {
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// nextVersion is one more than the highest model version known: version
// directories under the local model base path and the latest run record.
// The version of an interrupted (cancelled) latest run is given again when
// the local model volume has no directory of it: the trainer writes a
// version directory atomically, so none means the version was never made.
// On a PVC, which is not visible here, it is not given again.
func (s *stage) nextVersion(v *vols) int64 {
	var max int64
	if p := s.prev; p != nil && p.Model != nil && p.Model.Name == s.cfg.Deploy.Model && p.Model.Version > max {
		max = p.Model.Version
		if cancelled(p.State) && v.modelDir != "" {
			max-- // made only if its directory exists (counted below)
		}
	}
	if v.modelDir != "" {
		ents, _ := os.ReadDir(v.modelDir)
		for _, e := range ents {
			if n, err := strconv.ParseInt(e.Name(), 10, 64); err == nil && e.IsDir() && n > max {
				max = n
			}
		}
	}
	return max + 1
}
