"""Publishing: scaffold a manifest (``init``), package (``package``), publish to a Hub or a directory.

See ``docs/publishing.md``. Importing this package is cheap: torch is imported only by ``init``
when it has to read a foreign format or a base model.
"""

from .card import card_metadata, render_card
from .hub import HubPublishResult, publish_to_hub
from .hub_index import HubIndexPublishResult, IndexPushResult, publish_to_hub_index, push_index
from .local import LocalPublishResult, publish_local
from .package import PackageResult, package_adapter
from .scaffold import InitOptions, InitResult, init_adapter
from .sign import SigningKey, SignResult, sign_package

__all__ = [
    "HubIndexPublishResult", "IndexPushResult", "publish_to_hub_index", "push_index",
    "HubPublishResult", "InitOptions", "InitResult", "LocalPublishResult", "PackageResult", "card_metadata",
    "init_adapter", "package_adapter", "publish_local", "publish_to_hub", "render_card", "SignResult", "SigningKey",
    "sign_package",
]
