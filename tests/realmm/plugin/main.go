// The tests' stand-in for a plugin the new Mattermost version will not run (see
// tests/realmm/plugin.py, which builds it into a tarball `mmctl plugin add` accepts).
//
// On Mattermost 10.x it activates, logs a line and answers GET /status with "ok"
// (reachable as /plugins/com.mmdeploy.legacy-helper/status). On Mattermost 11 and later
// OnActivate returns an error, so the server keeps it installed but not running: what an
// upgrade does to a plugin that the new major version no longer runs.
package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/mattermost/mattermost/server/public/plugin"
)

// refuseFrom is the first Mattermost major version this plugin refuses to run on.
const refuseFrom = 11

type LegacyHelper struct {
	plugin.MattermostPlugin
}

func (p *LegacyHelper) OnActivate() error {
	version := p.API.GetServerVersion()
	major, err := strconv.Atoi(strings.SplitN(version, ".", 2)[0])
	if err != nil {
		return fmt.Errorf("legacy-helper cannot read the server version %q: %w", version, err)
	}
	if major >= refuseFrom {
		return fmt.Errorf("legacy-helper stands in for a plugin Mattermost %d no longer runs: refusing to activate on %s",
			refuseFrom, version)
	}
	p.API.LogInfo("legacy-helper activated", "server_version", version)
	return nil
}

func (p *LegacyHelper) ServeHTTP(c *plugin.Context, w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/status" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok"))
}

func main() {
	plugin.ClientMain(&LegacyHelper{})
}
