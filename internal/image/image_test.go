package image

import (
	"archive/tar"
	"bytes"
	"io"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The same binary gives the same image, whose only file is the binary, run as the agent.
func TestAgentImage(t *testing.T) {
	bin := []byte("\x7fELF pretend doppel binary")
	a, err := Agent(bin, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Agent(bin, "amd64")
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("two builds of one binary: digests %v and %v, want them equal", da, db)
	}
	other, _ := Agent(append(bin, '!'), "amd64")
	if d, _ := other.Digest(); d == da {
		t.Errorf("another binary gives the same digest %v", d)
	}
	cfg, err := a.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" || len(cfg.Config.Entrypoint) != 2 || cfg.Config.Entrypoint[0] != BinaryPath {
		t.Errorf("config: os %q arch %q entrypoint %q", cfg.OS, cfg.Architecture, cfg.Config.Entrypoint)
	}
	layers, _ := a.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil || h.Name != "doppel" || h.Mode != 0o755 || h.ModTime.Unix() != 0 {
		t.Fatalf("layer entry %+v, %v", h, err)
	}
	got, _ := io.ReadAll(tr)
	if !bytes.Equal(got, bin) {
		t.Errorf("the binary in the image differs")
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("more than one file in the layer: %v", err)
	}

	// The archive reads back as the same image.
	path := filepath.Join(t.TempDir(), "agent.tar")
	if err := WriteArchive(path, "doppel.local/doppel-agent:test", a); err != nil {
		t.Fatal(err)
	}
	back, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := back.Digest(); d != da {
		t.Errorf("archive's image digest %v, want %v", d, da)
	}
}
