package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Names of the default configuration files, relative to the working directory.
var (
	DefaultFileYAML = filepath.Join(".doppel", "config.yaml")
	DefaultFileJSON = filepath.Join(".doppel", "config.json")
)

// Load reads the configuration file at path over the defaults and checks it.
// A file with problems gives a *ProblemsError listing all of them.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, problems := parse(path, data)
	if len(problems) > 0 {
		return nil, &ProblemsError{File: path, Problems: problems}
	}
	return c, nil
}

// FindDefault returns the path of the default configuration file in dir,
// .doppel/config.yaml or .doppel/config.json, or "" when there is neither.
// Both at once is an error, so that one is never silently ignored.
func FindDefault(dir string) (string, error) {
	var found []string
	for _, name := range []string{DefaultFileYAML, DefaultFileJSON} {
		p := filepath.Join(dir, name)
		_, err := os.Stat(p)
		switch {
		case err == nil:
			found = append(found, p)
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("look for config: %w", err)
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("both %s and %s exist: remove one of them", found[0], found[1])
}

// LoadDefault loads the default configuration file in dir and returns it with
// its path, or the defaults and "" when dir has none.
func LoadDefault(dir string) (*Config, string, error) {
	path, err := FindDefault(dir)
	if err != nil {
		return nil, "", err
	}
	if path == "" {
		return Default(), "", nil
	}
	c, err := Load(path)
	if err != nil {
		return nil, path, err
	}
	return c, path, nil
}
