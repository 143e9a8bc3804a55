// Wrapper module: builds real Mattermost 10.3.0 (server and mmctl) from Mattermost's own Go
// module for the tests. server/v8 and server/public are of the SAME commit (053d0b5f0ad5,
// tag server/public/v0.1.9); see tests/realmm/build.py.
module mmdeploy.test/realmm

go 1.22.0

require (
	github.com/mattermost/mattermost/server/public v0.1.9
	github.com/mattermost/mattermost/server/v8 v8.0.0-20241113102039-053d0b5f0ad5
)

// server/go.mod's own replace line (a dependency's replaces are ignored, so repeated here).
replace github.com/olekukonko/tablewriter => github.com/olekukonko/tablewriter v0.0.5
