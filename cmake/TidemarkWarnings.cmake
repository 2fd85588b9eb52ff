# Warnings for the project's own targets; generated code is compiled without them.
function(tidemark_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers)
endfunction()
