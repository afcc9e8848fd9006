using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Cfn.Coordination.Tests.Resilience;

/// <summary>
/// A minimal HTTP/1.1 server on 127.0.0.1 and a free port, for tests that need real network traffic. Each request is
/// counted, its request line and headers kept, and answered by the given responder with <c>Connection: close</c>.
/// </summary>
internal sealed class LoopbackHttpServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Func<string, CancellationToken, Task<int>> _respond;
    private readonly Task _acceptLoop;
    private readonly ConcurrentBag<Task> _connections = [];
    private int _hits;

    /// <param name="respond">Given the request target (path and query), returns the status code to answer with.</param>
    public LoopbackHttpServer(Func<string, CancellationToken, Task<int>> respond)
    {
        _respond = respond;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _acceptLoop = AcceptAsync();
    }

    public int Port { get; }

    public string BaseUrl => $"http://127.0.0.1:{Port}";

    /// <summary>Requests whose head was read completely.</summary>
    public int Hits => Volatile.Read(ref _hits);

    /// <summary>Raw request heads (request line and headers), in arrival order.</summary>
    public ConcurrentQueue<string> Requests { get; } = new();

    /// <summary>Released once per request received.</summary>
    public SemaphoreSlim Received { get; } = new(0);

    /// <summary>A loopback port with nothing listening on it (for connection-refused cases).</summary>
    public static int UnusedPort()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptTcpClientAsync(_stopping.Token);
                _connections.Add(ServeAsync(client, _stopping.Token));
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
        catch (SocketException)
        {
        }
        catch (InvalidOperationException)
        {
            // Stop() came between two accepts: the listener is no longer listening.
        }
    }

    private async Task ServeAsync(TcpClient client, CancellationToken stopping)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var head = await ReadHeadAsync(stream, stopping);
                if (head is null)
                {
                    return;
                }

                Requests.Enqueue(head);
                Interlocked.Increment(ref _hits);
                Received.Release();
                var target = head.Split(' ', 3)[1];
                var status = await _respond(target, stopping);
                var body = Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"status {status}\n"));
                var response = Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture,
                    $"HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n"));
                await stream.WriteAsync(response, stopping);
                await stream.WriteAsync(body, stopping);
                await stream.FlushAsync(stopping);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
            {
                // the client went away or the server is stopping
            }
        }
    }

    private static async Task<string?> ReadHeadAsync(NetworkStream stream, CancellationToken stopping)
    {
        var buffer = new byte[8192];
        var length = 0;
        while (length < buffer.Length)
        {
            var read = await stream.ReadAsync(buffer.AsMemory(length), stopping);
            if (read == 0)
            {
                return null;
            }

            length += read;
            var text = Encoding.ASCII.GetString(buffer, 0, length);
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end >= 0)
            {
                return text[..end];
            }
        }

        return null;
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Stop();
        await _acceptLoop;
        await Task.WhenAll(_connections);
        _stopping.Dispose();
        Received.Dispose();
    }
}
