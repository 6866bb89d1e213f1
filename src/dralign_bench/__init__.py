"""dralign's benchmarks, apart from the library: the shift world (:mod:`.world`, :mod:`.shift`,
:mod:`.world_lm`, and :mod:`.demo` on top), the exact log-linear world (:mod:`.loglinear`) and
the speed comparison with TRL (:mod:`.speed`). Plots need the ``bench`` extra
(``pip install 'dralign[bench]'``); ``import dralign`` never imports this package — the CLI
reaches it lazily, and ``dralign eval`` finds the world's ``world:...`` specs through the
``dralign.rewards`` / ``dralign.prompts`` entry points."""
