// Wrapper module: builds real Mattermost 11.4.0 (server and mmctl) from Mattermost's own Go
// module for the tests. server/v8 and server/public are of the SAME commit (3321db82c3e7,
// tag server/public/v0.1.22); see tests/realmm/build.py.
module mmdeploy.test/realmm

go 1.24.11

require (
	github.com/mattermost/mattermost/server/public v0.1.22
	github.com/mattermost/mattermost/server/v8 v8.0.0-20260130160320-3321db82c3e7
)

// server/go.mod's own replace lines (a dependency's replaces are ignored, so repeated here).
replace github.com/olekukonko/tablewriter => github.com/olekukonko/tablewriter v0.0.5

// v1.0.5, which server/go.mod asks for, is not served by the module proxy here.
replace github.com/richardlehane/msoleps => github.com/richardlehane/msoleps v1.0.4
