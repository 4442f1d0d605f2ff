package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	cases := []struct {
		args    []string
		env     map[string]string
		wantOut string
		wantErr string
	}{
		{args: []string{"config", "global"}, wantOut: "`MESHTRACE_KDS_ADDRESS`"},
		{args: []string{"config", "zone"}, wantOut: "`MESHTRACE_GLOBAL_ADDRESSES`"},
		{args: []string{"frobnicate"}, wantErr: `unknown subcommand "frobnicate"`},
		{args: []string{}, wantErr: "no subcommand"},
		{args: []string{"zone"}, wantErr: "name: must be set"},
		{args: []string{"zone", "--name", "west", "--global-address", "nohost"}, wantErr: `global.addresses[0]: "nohost" is not host:port`},
		{args: []string{"zone", "--name", "west", "--log-level", "loud"}, wantErr: "log.level"},
		{args: []string{"global"}, env: map[string]string{"MESHTRACE_API_ADDRESS": "nope"}, wantErr: "api.address"},
		{args: []string{"global", "--config", "/does/not/exist.yaml"}, wantErr: "exist.yaml"},
		{args: []string{"global", "token", "zone"}, wantErr: "--name is required"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errb)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Fatalf("output lacks %q:\n%s", tc.wantOut, out.String())
			}
		})
	}
}
