# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd discovery tokens: mint, read back, delete, and find the one a running cluster already uses.

Import from the submodule that defines a name; this package re-exports nothing.

- http: validation of URLs, sizes, timeouts; HTTP requests with retries (Transport) and error texts.
- base: the Backend interface every protocol implements, and backend_for(protocol, service, ...).
- public: the protocol of https://discovery.etcd.io (PublicBackend).
- etcd_v2: a token in a self-hosted etcd's v2 keys API (EtcdV2Backend; V2Directory, which public reads through).
- etcd_v3: etcd 3.6+ v3 discovery through the v3 JSON gateway (EtcdV3Backend).
- user_data: finding the discovery setting in running instances' user data, to reuse it.
- states: what the discovery_token module does with state=present, absent and info.
"""
