// Wrapper module: builds real Mattermost 6.3.0 (the server; its mmctl lived in another
// repository, github.com/mattermost/mmctl, whose versions the proxy here does not serve)
// from Mattermost's own Go module of that era, github.com/mattermost/mattermost-server/v6
// (an exact release tag). See tests/realmm/build.py.
module mmdeploy.test/realmm

go 1.16

require github.com/mattermost/mattermost-server/v6 v6.3.0
