# Warnings for the project's own targets; generated code is compiled without them.
# TIDEMARK_WERROR=OFF (sanitizer and fuzz builds, often with another compiler) keeps them
# warnings: the normal build is where warnings fail.
function(tidemark_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
  if(TIDEMARK_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
