// Command flood is the e2e suite's attacker: it keeps -conns idle
// connections open to each -target (host:port), reopening those the server
// closes, and for -tls targets completes a TLS handshake first and then
// says nothing (a client that never presents a token). It runs until killed
// and logs how many connections are open and how many the servers closed.
package main

import (
	"crypto/tls"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	targets := flag.String("targets", "", "comma separated host:port to flood")
	tlsTargets := flag.String("tls-targets", "", "comma separated host:port to flood with TLS handshakes")
	conns := flag.Int("conns", 2000, "connections held open per target")
	redial := flag.Duration("redial", 200*time.Millisecond, "pause before reopening a connection the server closed")
	flag.Parse()
	var open, closed atomic.Int64
	start := func(addr string, withTLS bool) {
		for range *conns {
			go func() {
				for {
					hold(addr, withTLS, &open, &closed)
					time.Sleep(*redial)
				}
			}()
			time.Sleep(time.Millisecond)
		}
	}
	for _, t := range split(*targets) {
		go start(t, false)
	}
	for _, t := range split(*tlsTargets) {
		go start(t, true)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	tick := time.NewTicker(2 * time.Second)
	for {
		select {
		case <-sig:
			return
		case <-tick.C:
			log.Printf("flood: %d open, %d closed by servers", open.Load(), closed.Load())
		}
	}
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// hold opens one connection and keeps it until the server closes it.
func hold(addr string, withTLS bool, open, closed *atomic.Int64) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	if withTLS {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			return
		}
		_ = tc.SetDeadline(time.Time{})
		c = tc
	}
	open.Add(1)
	defer open.Add(-1)
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			closed.Add(1)
			return
		}
	}
}
