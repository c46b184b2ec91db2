package incoming

import (
	"fmt"
	"regexp"
	"strings"

	"doppel.dev/doppel/internal/httproute"
	"doppel.dev/doppel/internal/wire"
)

// compileFilter turns the filter as the user wrote it into a matcher.
func compileFilter(f wire.HTTPFilter) (*httproute.Filter, error) {
	var out httproute.Filter
	for _, h := range f.Headers {
		m, err := httproute.ParseHeaderMatch(h)
		if err != nil {
			return nil, fmt.Errorf("http header filter %q: %w", h, err)
		}
		out.Headers = append(out.Headers, m)
	}
	if f.Path != "" {
		re, err := regexp.Compile(f.Path)
		if err != nil {
			return nil, fmt.Errorf("http path filter %q: %w", f.Path, err)
		}
		out.Path = re
	}
	for _, m := range f.Methods {
		out.Methods = append(out.Methods, strings.ToUpper(m))
	}
	return &out, nil
}
