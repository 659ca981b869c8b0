package clitest

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// main stands for a command's main: it prints its arguments and a
// variable given through Run, and exits with the code its first argument
// names.
func main() {
	fmt.Println("args:", strings.Join(os.Args[1:], " "), "var:", os.Getenv("CLITEST_VAR"))
	if len(os.Args) > 1 && os.Args[1] == "fail" {
		os.Exit(3)
	}
}

func TestMain(m *testing.M) { Main(m, main) }

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"ok", "x"}, 0},
		{[]string{"fail"}, 3},
	} {
		code, out := Run(t, []string{"CLITEST_VAR=v"}, tc.args...)
		want := fmt.Sprintf("args: %s var: v\n", strings.Join(tc.args, " "))
		if code != tc.code || out != want {
			t.Errorf("Run(%q) = %d, %q; want %d, %q", tc.args, code, out, tc.code, want)
		}
	}
}
