# Board entry point. Everything lives in modules so mpy-cross compiles it and imports stay lazy.
from locker import runtime

runtime.main()
