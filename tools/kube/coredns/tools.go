//go:build tools

// Package coredns pins the CoreDNS that scripts/cluster.sh builds for the test cluster's DNS.
package coredns

import _ "github.com/coredns/coredns"
