"""Prints, as JSON, what a program sees of how it was started."""

import json
import os
import sys

main_module = sys.modules["__main__"]
print(
    json.dumps(
        {
            "argv": sys.argv,
            "path0": sys.path[0],
            "name": __name__,
            "file": __file__,
            "main_file": getattr(main_module, "__file__", None),
            "main_is_this_module": main_module.__dict__ is globals(),
            "code_filename": sys._getframe().f_code.co_filename,
            "cwd": os.getcwd(),
        },
        indent=1,
        sort_keys=True,
    )
)
