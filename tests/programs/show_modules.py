import sys  # first line: what was loaded before the program ran

LOADED = sorted(sys.modules)

import json  # noqa: E402  (imported by the program itself: its import-time code must be profiled)

json.dump({"modules": LOADED, "encoder": type(json._default_encoder).__name__},  # type: ignore[attr-defined]
          sys.stdout)
