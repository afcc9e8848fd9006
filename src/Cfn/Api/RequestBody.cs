using System.Text;

namespace Cfn.Api;

/// <summary>
/// The one way an endpoint reads its request body: never more than a limit the endpoint chooses, so a client cannot make
/// the process buffer an unbounded body. Each endpoint keeps its own answer to a body over the limit.
/// </summary>
internal static class RequestBody
{
    /// <summary>
    /// The body's bytes, or null as soon as it is known to exceed <paramref name="maxBytes"/> (a larger declared
    /// <c>Content-Length</c> is refused before anything is read).
    /// </summary>
    public static async Task<byte[]?> ReadAsync(HttpRequest request, int maxBytes, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.ContentLength > maxBytes)
        {
            return null;
        }

        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > maxBytes)
            {
                return null;
            }

            buffer.Write(chunk, 0, read);
        }

        return buffer.ToArray();
    }

    /// <summary>The body as UTF-8 text, or null when it exceeds <paramref name="maxBytes"/>.</summary>
    public static async Task<string?> ReadTextAsync(HttpRequest request, int maxBytes, CancellationToken cancellationToken) =>
        await ReadAsync(request, maxBytes, cancellationToken).ConfigureAwait(false) is { } bytes ? Encoding.UTF8.GetString(bytes) : null;
}
