// Command etcd is etcd's own entry point (the same two lines as etcd's root main.go),
// compiled from the published go.etcd.io/etcd/server/v3 module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
