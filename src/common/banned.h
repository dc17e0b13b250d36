/* Functions hutch code must not call (after git's banned.h): each has a bounded or safer
 * replacement. Include this header last, after every system header, in every .c file of src/;
 * a later use of a poisoned name is a compile error.
 *
 * With _FORTIFY_SOURCE some C libraries (and clang) define several of these names as macros;
 * poisoning a macro is itself a diagnostic, so each is undefined first. Nothing here calls
 * them, so nothing loses its fortified form. */
#pragma once

#undef strcpy
#undef strcat
#undef strncpy
#undef strncat
#undef sprintf
#undef vsprintf
#undef gets

#pragma GCC poison strcpy strcat strncpy strncat
#pragma GCC poison sprintf vsprintf
#pragma GCC poison strtok
#pragma GCC poison atoi atol atoll
#pragma GCC poison system popen
#pragma GCC poison gets
#pragma GCC poison mktemp tmpnam tempnam
