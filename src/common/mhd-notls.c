/* Link-time stand-ins for the GnuTLS functions that libmicrohttpd's static archive refers to.
 *
 * envd and interpd, the daemons in every sandbox, serve plain HTTP only (TLS ends at the
 * gateway), but the distribution's libmicrohttpd is built with HTTPS support, and linking it as
 * a shared library loads GnuTLS and the eight libraries under it (p11-kit, nettle, hogweed,
 * gmp, tasn1, idn2, unistring, ffi) into every sandbox: about 2.7 MiB of envd's idle RSS, and
 * 0.3 MiB of interpd's private memory, spent on their relocations and constructors. So they
 * link libmicrohttpd.a (mhd_plain_dep in meson.build) and these definitions satisfy its
 * references. Never linked into a program that also loads GnuTLS itself (hutch serve, whose
 * libraries use it): these would take the real functions' place.
 *
 * Invariant: none of them but gnutls_global_init()/gnutls_global_deinit() (which MHD calls
 * from its library constructor and destructor) is ever reached, because neither daemon passes
 * MHD_USE_TLS; a call to any other aborts. Only the names matter to the linker, so the
 * functions are declared without GnuTLS's types. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/banned.h"

_Noreturn static void tls_unreachable(const char *name)
{
    fprintf(stderr, "%s: %s called, but it is built without TLS\n", program_invocation_short_name, name);
    abort();
}

int gnutls_global_init(void);
int gnutls_global_init(void)
{
    return 0;
}

void gnutls_global_deinit(void);
void gnutls_global_deinit(void)
{
}

static void *no_malloc(size_t size)
{
    (void)size;
    tls_unreachable("gnutls_malloc");
}
void *(*gnutls_malloc)(size_t);
void *(*gnutls_malloc)(size_t) = no_malloc;

#define UNREACHABLE(name)                                                                                    \
    void name(void);                                                                                         \
    void name(void)                                                                                          \
    {                                                                                                        \
        tls_unreachable(#name);                                                                              \
    }

UNREACHABLE(gnutls_alpn_set_protocols)
UNREACHABLE(gnutls_bye)
UNREACHABLE(gnutls_certificate_allocate_credentials)
UNREACHABLE(gnutls_certificate_free_credentials)
UNREACHABLE(gnutls_certificate_server_set_request)
UNREACHABLE(gnutls_certificate_set_dh_params)
UNREACHABLE(gnutls_certificate_set_retrieve_function2)
UNREACHABLE(gnutls_certificate_set_retrieve_function3)
UNREACHABLE(gnutls_certificate_set_x509_key_mem)
UNREACHABLE(gnutls_certificate_set_x509_key_mem2)
UNREACHABLE(gnutls_certificate_set_x509_trust_mem)
UNREACHABLE(gnutls_cipher_get)
UNREACHABLE(gnutls_credentials_set)
UNREACHABLE(gnutls_deinit)
UNREACHABLE(gnutls_dh_params_deinit)
UNREACHABLE(gnutls_dh_params_import_pkcs3)
UNREACHABLE(gnutls_dh_params_init)
UNREACHABLE(gnutls_handshake)
UNREACHABLE(gnutls_init)
UNREACHABLE(gnutls_priority_deinit)
UNREACHABLE(gnutls_priority_init)
UNREACHABLE(gnutls_priority_set)
UNREACHABLE(gnutls_protocol_get_version)
UNREACHABLE(gnutls_psk_allocate_server_credentials)
UNREACHABLE(gnutls_psk_free_server_credentials)
UNREACHABLE(gnutls_psk_set_server_credentials_function)
UNREACHABLE(gnutls_record_check_pending)
UNREACHABLE(gnutls_record_get_direction)
UNREACHABLE(gnutls_record_recv)
UNREACHABLE(gnutls_record_send)
UNREACHABLE(gnutls_session_get_ptr)
UNREACHABLE(gnutls_session_set_ptr)
UNREACHABLE(gnutls_strerror)
UNREACHABLE(gnutls_transport_set_int2)
